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

const created = `{"name":"Lamp","description":"Warm desk light","price":19.99,"stock":5}`

func TestApply(t *testing.T) {
	base := func() *Doc {
		d, err := Apply(nil, ev(Created, 1, created))
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
			return d.ID == "p1" && d.Name == "Lamp" && d.Description == "Warm desk light" && d.Price == 19.99 &&
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
			d, _ := Apply(base(), ev(Deleted, 2, `{"reason":"gone"}`))
			return d
		}(), ev(Updated, 3, `{"name":"Back","description":"x","price":1,"stock":1}`), func(d *Doc) bool {
			return d.Deleted && d.Version == 3 && d.Name == "Lamp"
		}, false},
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
			got, err := Apply(tc.cur, tc.env)
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
	d, err := Apply(nil, ev(Created, 1, created))
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
