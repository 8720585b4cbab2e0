package products

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"cqrsflow/internal/envelope"
	"cqrsflow/internal/projection"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func ev(typ string, version int64, payload string) *envelope.Envelope {
	return &envelope.Envelope{
		EventID: typ + "-" + string(rune('0'+version)), EventType: typ, SchemaVersion: 1,
		AggregateType: "product", AggregateID: "p1", Version: version,
		OccurredAt: t0.Add(time.Duration(version) * time.Second), RecordedAt: t0.Add(time.Duration(version)*time.Second + time.Millisecond),
		Payload: json.RawMessage(payload),
	}
}

// project is the projection as the projector runs it: v1 payloads
// upcast, versions checked, then Apply.
func project(cur *Doc, env *envelope.Envelope) (*Doc, error) {
	var c any
	if cur != nil {
		c = cur
	}
	d, err := Projection.Apply(c, env)
	if err != nil {
		return nil, err
	}
	return d.(*Doc), nil
}

const created = `{"name":"Lamp","description":"Warm desk light","price":19.99,"stock":5}`

func TestApply(t *testing.T) {
	base := func() *Doc {
		d, err := project(nil, ev(Created, 1, created))
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	tests := []struct {
		name    string
		cur     *Doc
		env     *envelope.Envelope
		want    func(*Doc) bool
		wantErr bool
	}{
		{"create", nil, ev(Created, 1, created), func(d *Doc) bool {
			return d.ID == "p1" && d.Name == "Lamp" && d.Description == "Warm desk light" && d.Price == 19.99 && d.Currency == "EUR" &&
				d.Stock == 5 && d.Version == 1 && !d.Deleted && d.CreatedAt.Equal(t0.Add(time.Second)) &&
				d.LastEventID == "ProductCreated-1" && d.RecordedAt.Equal(t0.Add(time.Second+time.Millisecond))
		}, false},
		{"update replaces state", base(), ev(Updated, 2, `{"name":"Lamp 2","description":"","price":21,"stock":0}`), func(d *Doc) bool {
			return d.Name == "Lamp 2" && d.Description == "" && d.Price == 21 && d.Stock == 0 && d.Version == 2 &&
				d.CreatedAt.Equal(t0.Add(time.Second)) && d.UpdatedAt.Equal(t0.Add(2*time.Second))
		}, false},
		{"delete is soft", base(), ev(Deleted, 2, `{}`), func(d *Doc) bool {
			return d.Deleted && d.Version == 2 && d.Name == "Lamp"
		}, false},
		{"update after delete does not resurrect", func() *Doc {
			d, _ := project(base(), ev(Deleted, 2, `{"reason":"gone"}`))
			return d
		}(), ev(Updated, 3, `{"name":"Back","description":"x","price":1,"stock":1}`), func(d *Doc) bool {
			return d.Deleted && d.Version == 3 && d.Name == "Lamp"
		}, false},
		{"update at v2", base(), v2(ev(Updated, 2, `{"name":"Lamp 2","description":"","price":21,"currency":"JPY","stock":0}`)), func(d *Doc) bool {
			return d.Name == "Lamp 2" && d.Price == 21 && d.Currency == "JPY" && d.Version == 2
		}, false},
		{"v2 without currency", nil, v2(ev(Created, 1, created)), nil, true},
		{"v1 with a currency", nil, ev(Created, 1, `{"name":"x","description":"","price":1,"currency":"USD","stock":1}`), nil, true},
		{"unknown schema version", base(), func() *envelope.Envelope {
			e := ev(Updated, 2, `{"name":"x","description":"","price":1,"currency":"USD","stock":1}`)
			e.SchemaVersion = 3
			return e
		}(), nil, true},
		{"update without document", nil, ev(Updated, 1, created), nil, true},
		{"create twice", base(), ev(Created, 2, created), nil, true},
		{"unknown type", base(), ev("ProductRenamed", 2, `{}`), nil, true},
		{"payload wrong type", nil, ev(Created, 1, `{"name":"x","price":"cheap","stock":1}`), nil, true},
		{"payload missing field", nil, ev(Created, 1, `{"name":"x","stock":1}`), nil, true},
		{"wrong aggregate", nil, func() *envelope.Envelope { e := ev(Created, 1, created); e.AggregateType = "order"; return e }(), nil, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var before Doc
			if tc.cur != nil {
				before = *tc.cur
			}
			got, err := project(tc.cur, tc.env)
			if tc.wantErr {
				if !errors.Is(err, projection.ErrUnprojectable) {
					t.Fatalf("err = %v, want ErrUnprojectable", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !tc.want(got) {
				t.Errorf("unexpected document %+v", got)
			}
			if tc.cur != nil && *tc.cur != before {
				t.Errorf("Apply mutated its input")
			}
		})
	}
}

func TestDocumentJSONMatchesMapping(t *testing.T) {
	d, err := project(nil, ev(Created, 1, created))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(d)
	var fields map[string]any
	_ = json.Unmarshal(b, &fields)
	m, err := Projection.Mapping()
	if err != nil {
		t.Fatal(err)
	}
	var mapping struct {
		Mappings struct {
			Properties map[string]any `json:"properties"`
		} `json:"mappings"`
	}
	if err := json.Unmarshal(m, &mapping); err != nil {
		t.Fatal(err)
	}
	for k := range fields {
		if _, ok := mapping.Mappings.Properties[k]; !ok {
			t.Errorf("document field %q is not in the strict mapping", k)
		}
	}
	for k := range mapping.Mappings.Properties {
		if _, ok := fields[k]; !ok {
			t.Errorf("mapping field %q is never written", k)
		}
	}
}

func v2(e *envelope.Envelope) *envelope.Envelope {
	e.SchemaVersion = 2
	return e
}

// A history stored partly at v1 and partly at v2 projects to the same
// document as the same history written at v2 (v1 prices are in EUR).
func TestMixedHistoryEqualsAllV2(t *testing.T) {
	v1s := []string{
		`{"name":"A","description":"<a>","price":1.5,"stock":1}`,
		`{"name":"B","description":"","price":2,"stock":2}`,
		`{"name":"C","description":"c","price":3.25,"stock":0}`,
	}
	for mask := range 1 << len(v1s) {
		var mixed, all *Doc
		for i, p := range v1s {
			typ := Updated
			if i == 0 {
				typ = Created
			}
			m := ev(typ, int64(i+1), p)
			a := v2(ev(typ, int64(i+1), p[:len(p)-len(`"stock":0}`)]+`"currency":"EUR",`+p[len(p)-len(`"stock":0}`):]))
			if mask&(1<<i) != 0 {
				m = a
			}
			var err error
			if mixed, err = project(mixed, m); err != nil {
				t.Fatalf("mask %b: %v", mask, err)
			}
			if all, err = project(all, a); err != nil {
				t.Fatalf("mask %b all v2: %v", mask, err)
			}
		}
		if *mixed != *all {
			t.Errorf("mask %b: mixed %+v, all v2 %+v", mask, *mixed, *all)
		}
	}
}
