package upcast

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"

	"cqrsflow/internal/envelope"
	"cqrsflow/internal/eventschema"
)

func TestProductStateV1ToV2(t *testing.T) {
	schemas, err := eventschema.Load()
	if err != nil {
		t.Fatal(err)
	}
	for _, v1 := range []string{
		`{"name":"Lamp","description":"bright","price":19.99,"stock":3}`,
		`{"name":"a <b> & c","description":"","price":0,"stock":0}`,
		` { "stock" : 9007199254740991 , "price" : 100000000000, "name" : "ü\u00e9", "description" : "x" } `,
	} {
		for _, typ := range []string{"ProductCreated", "ProductUpdated"} {
			if err := schemas.Validate("product", typ, 1, []byte(v1)); err != nil {
				t.Fatalf("test input is not v1: %v", err)
			}
			out, to, err := Events().Upcast("product", typ, 1, json.RawMessage(v1))
			if err != nil || to != 2 {
				t.Fatalf("%s %s: v%d %v", typ, v1, to, err)
			}
			if err := schemas.Validate("product", typ, 2, out); err != nil {
				t.Errorf("%s: upcast payload %s is not v2: %v", typ, out, err)
			}
			var in, got map[string]any
			_ = json.Unmarshal([]byte(v1), &in)
			if err := json.Unmarshal(out, &got); err != nil {
				t.Fatal(err)
			}
			if got["currency"] != "EUR" {
				t.Errorf("%s: currency %v, want EUR", out, got["currency"])
			}
			delete(got, "currency")
			if !reflect.DeepEqual(in, got) {
				t.Errorf("upcast changed the v1 members: %s → %s", v1, out)
			}
		}
	}
	if out, _, _ := ProductStateV1ToV2(json.RawMessage(`{"name":"<b>","description":"","price":1,"stock":1}`)); strings.Contains(string(out), `\u003c`) {
		t.Errorf("stored text re-escaped: %s", out)
	}
	// Hostile payloads: refused with an error naming the step, never a
	// guess (nothing of the shape of v1 to upcast).
	for _, bad := range []string{`null`, `[]`, `"x"`, `{`, ``, `{"name":"a","currency":"USD"}`, `{"a":1}{"b":2}`} {
		_, _, err := Events().Upcast("product", "ProductUpdated", 1, json.RawMessage(bad))
		var ue *Error
		if !errors.Is(err, ErrUpcast) || !errors.As(err, &ue) || ue.From != 1 || ue.EventType != "ProductUpdated" {
			t.Errorf("%q: %v, want an upcast error of ProductUpdated v1", bad, err)
		}
	}
}

// priceObjectV2ToV3 is a test-only v3 of the product state: the price
// becomes {amount, currency}. It shows a chain and a non-additive change.
func priceObjectV2ToV3(p json.RawMessage) (json.RawMessage, int, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(p, &m); err != nil {
		return nil, 0, err
	}
	price, currency := m["price"], m["currency"]
	if price == nil || currency == nil {
		return nil, 0, errors.New("v2 has a price and a currency")
	}
	delete(m, "currency")
	m["price"] = json.RawMessage(fmt.Sprintf(`{"amount":%s,"currency":%s}`, price, currency))
	out, err := json.Marshal(m)
	return out, 3, err
}

func withV3() *Registry {
	return Events().
		MustRegister("product", "ProductCreated", 2, priceObjectV2ToV3).
		MustRegister("product", "ProductUpdated", 2, priceObjectV2ToV3)
}

func TestChain(t *testing.T) {
	r := withV3()
	v1 := json.RawMessage(`{"name":"a","description":"","price":2.5,"stock":1}`)
	v2 := json.RawMessage(`{"name":"a","description":"","price":2.5,"currency":"EUR","stock":1}`)
	want := `{"description":"","name":"a","price":{"amount":2.5,"currency":"EUR"},"stock":1}`
	for _, c := range []struct {
		from    int
		payload json.RawMessage
	}{{1, v1}, {2, v2}} {
		out, to, err := r.Upcast("product", "ProductCreated", c.from, c.payload)
		if err != nil || to != 3 || string(out) != want {
			t.Errorf("v%d → %s v%d %v, want %s v3", c.from, out, to, err, want)
		}
	}
	// Already current: the same bytes, not a copy.
	v3 := json.RawMessage(want)
	out, to, err := r.Upcast("product", "ProductCreated", 3, v3)
	if err != nil || to != 3 || &out[0] != &v3[0] {
		t.Errorf("v3 came back as %s v%d %v", out, to, err)
	}
	// Unknown types and versions pass through; a nil registry upcasts nothing.
	for _, k := range []Key{{"product", "ProductDeleted", 1}, {"order", "ProductCreated", 1}, {"product", "ProductCreated", 7}} {
		if out, to, err := r.Upcast(k.AggregateType, k.EventType, k.From, v1); err != nil || to != k.From || string(out) != string(v1) {
			t.Errorf("%+v: %s v%d %v, want unchanged", k, out, to, err)
		}
	}
	var none *Registry
	if out, to, err := none.Upcast("product", "ProductCreated", 1, v1); err != nil || to != 1 || string(out) != string(v1) {
		t.Errorf("nil registry: %s v%d %v", out, to, err)
	}
	// A failure in the second step names that step.
	_, _, err = r.Upcast("product", "ProductUpdated", 1, json.RawMessage(`{"name":"a"}`))
	var ue *Error
	if !errors.As(err, &ue) || ue.From != 2 {
		t.Errorf("broken v1 without a price: %v, want the v2 step to fail", err)
	}
}

func TestRegisterRefuses(t *testing.T) {
	r := NewRegistry()
	id := func(p json.RawMessage) (json.RawMessage, int, error) { return p, 2, nil }
	if err := r.Register("product", "ProductCreated", 1, id); err != nil {
		t.Fatal(err)
	}
	for name, err := range map[string]error{
		"twice":          r.Register("product", "ProductCreated", 1, id),
		"no type":        r.Register("", "ProductCreated", 1, id),
		"no event":       r.Register("product", "", 1, id),
		"version 0":      r.Register("product", "ProductCreated", 0, id),
		"nil upcaster":   r.Register("product", "ProductUpdated", 1, nil),
		"negative start": r.Register("product", "ProductUpdated", -1, id),
	} {
		if err == nil {
			t.Errorf("%s: registered", name)
		}
	}
	func() {
		defer func() {
			if recover() == nil {
				t.Error("MustRegister of a duplicate did not panic")
			}
		}()
		r.MustRegister("product", "ProductCreated", 1, id)
	}()
	// An upcaster that does not raise the version would loop: refused.
	same := NewRegistry().MustRegister("x", "E", 2, func(p json.RawMessage) (json.RawMessage, int, error) { return p, 2, nil })
	back := NewRegistry().MustRegister("x", "E", 2, func(p json.RawMessage) (json.RawMessage, int, error) { return p, 1, nil })
	for _, r := range []*Registry{same, back} {
		if _, _, err := r.Upcast("x", "E", 2, json.RawMessage(`{}`)); !errors.Is(err, ErrUpcast) {
			t.Errorf("non-advancing upcaster: %v", err)
		}
	}
}

func TestEnvelope(t *testing.T) {
	r := Events()
	env := &envelope.Envelope{EventID: "e", EventType: "ProductUpdated", SchemaVersion: 1, AggregateType: "product",
		AggregateID: "p", Version: 4, Payload: json.RawMessage(`{"name":"a","description":"","price":1,"stock":1}`)}
	orig := *env
	up, err := r.Envelope(env)
	if err != nil || up == env || up.SchemaVersion != 2 || !strings.Contains(string(up.Payload), `"currency":"EUR"`) {
		t.Fatalf("upcast envelope %+v %v", up, err)
	}
	if up.EventID != "e" || up.Version != 4 || up.AggregateID != "p" {
		t.Errorf("envelope fields changed: %+v", up)
	}
	if !reflect.DeepEqual(*env, orig) {
		t.Errorf("the caller's envelope changed: %+v", env)
	}
	if same, err := r.Envelope(up); err != nil || same != up {
		t.Errorf("current envelope: %p %v, want the same pointer", same, err)
	}
	bad := orig
	bad.Payload = json.RawMessage(`[]`)
	if _, err := r.Envelope(&bad); !errors.Is(err, ErrUpcast) {
		t.Errorf("bad payload: %v", err)
	}
}

func TestEventsKeys(t *testing.T) {
	var got []string
	for _, k := range Events().Keys() {
		got = append(got, fmt.Sprintf("%s/%s.v%d", k.AggregateType, k.EventType, k.From))
	}
	slices.Sort(got)
	want := []string{"product/ProductCreated.v1", "product/ProductUpdated.v1"}
	if !slices.Equal(got, want) {
		t.Errorf("upcasters %v, want %v", got, want)
	}
}

// Envelope, the one call for backfills, upcasts a v1 product envelope,
// leaves a current one and other aggregates alone, and refuses a
// malformed v1 payload.
func TestPackageEnvelope(t *testing.T) {
	v1 := &envelope.Envelope{AggregateType: "product", EventType: "ProductUpdated", SchemaVersion: 1, EventID: "e1",
		Payload: json.RawMessage(`{"name":"a","description":"","price":1,"stock":2}`)}
	got, err := Envelope(v1)
	if err != nil || got == v1 || got.SchemaVersion != 2 || got.EventID != "e1" ||
		string(got.Payload) != `{"currency":"EUR","description":"","name":"a","price":1,"stock":2}` {
		t.Fatalf("Envelope(v1) = %+v %s, %v", got, got.Payload, err)
	}
	if v1.SchemaVersion != 1 || !strings.Contains(string(v1.Payload), `"stock":2}`) {
		t.Errorf("the caller's envelope changed: %+v", v1)
	}
	for _, same := range []*envelope.Envelope{
		{AggregateType: "product", EventType: "ProductUpdated", SchemaVersion: 2, Payload: json.RawMessage(`{"currency":"USD"}`)},
		{AggregateType: "product", EventType: "ProductDeleted", SchemaVersion: 1, Payload: json.RawMessage(`{}`)},
		{AggregateType: "order", EventType: "OrderCreated", SchemaVersion: 1, Payload: json.RawMessage(`{}`)},
	} {
		if got, err := Envelope(same); err != nil || got != same {
			t.Errorf("Envelope(%+v) = %+v, %v; want it unchanged", same, got, err)
		}
	}
	for _, bad := range []string{`[]`, `null`, `{"currency":"EUR"}`, `{`} {
		env := &envelope.Envelope{AggregateType: "product", EventType: "ProductCreated", SchemaVersion: 1, Payload: json.RawMessage(bad)}
		if _, err := Envelope(env); !errors.Is(err, ErrUpcast) {
			t.Errorf("Envelope(v1 %s): %v, want ErrUpcast", bad, err)
		}
	}
}
