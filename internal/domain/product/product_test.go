package product

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"cqrsflow/internal/domain"
)

func ptr(s string) *string { return &s }

func TestValidate(t *testing.T) {
	good := Input{Name: ptr("Lamp"), Description: ptr("bright"), Price: "19.99", Stock: "3"}
	f, err := Validate(good)
	if err != nil || f.Price != 1999 || f.Stock != 3 || f.Name != "Lamp" {
		t.Fatalf("valid input: %+v %v", f, err)
	}
	cases := map[string]struct {
		in    Input
		field string
	}{
		"missing name":     {Input{Price: "1", Stock: "1"}, "name"},
		"blank name":       {Input{Name: ptr(" "), Price: "1", Stock: "1"}, "name"},
		"long name":        {Input{Name: ptr(strings.Repeat("x", 201)), Price: "1", Stock: "1"}, "name"},
		"long description": {Input{Name: ptr("a"), Description: ptr(strings.Repeat("x", 5001)), Price: "1", Stock: "1"}, "description"},
		"negative price":   {Input{Name: ptr("a"), Price: "-1", Stock: "1"}, "price"},
		"price 3 decimals": {Input{Name: ptr("a"), Price: "1.001", Stock: "1"}, "price"},
		"missing price":    {Input{Name: ptr("a"), Stock: "1"}, "price"},
		"negative stock":   {Input{Name: ptr("a"), Price: "1", Stock: "-1"}, "stock"},
		"fractional stock": {Input{Name: ptr("a"), Price: "1", Stock: "1.5"}, "stock"},
		"missing stock":    {Input{Name: ptr("a"), Price: "1"}, "stock"},
	}
	for name, c := range cases {
		_, err := Validate(c.in)
		var ve *domain.ValidationError
		if !errors.As(err, &ve) || len(ve.Fields) != 1 || ve.Fields[0].Field != c.field {
			t.Errorf("%s: got %v, want one error on %s", name, err, c.field)
		}
	}
	if _, err := Validate(Input{}); err == nil || len(err.(*domain.ValidationError).Fields) != 3 {
		t.Errorf("empty input should name name, price and stock: %v", err)
	}
}

func fold(t *testing.T, evs ...domain.Event) *Product {
	t.Helper()
	var p Product
	for i, e := range evs {
		b, err := json.Marshal(e.Payload)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Apply(int64(i+1), e.Type, b); err != nil {
			t.Fatal(err)
		}
	}
	return &p
}

func TestLifecycle(t *testing.T) {
	f := Fields{Name: "a", Price: 100, Stock: 1}
	var empty Product
	if _, err := empty.Update(f); !errors.Is(err, domain.ErrNotFound) {
		t.Errorf("update of unknown product: %v", err)
	}
	if _, err := empty.Delete(""); !errors.Is(err, domain.ErrNotFound) {
		t.Errorf("delete of unknown product: %v", err)
	}
	created := Create(f)
	p := fold(t, created...)
	if !p.Exists || p.Version != 1 || p.Price != 100 {
		t.Fatalf("after create: %+v", p)
	}
	upd, err := p.Update(Fields{Name: "b", Price: 250, Stock: 2})
	if err != nil || upd[0].Type != EventUpdated {
		t.Fatalf("update: %v %v", upd, err)
	}
	del, err := p.Delete("gone")
	if err != nil || del[0].Type != EventDeleted {
		t.Fatalf("delete: %v %v", del, err)
	}
	p = fold(t, append(append(created, upd...), del...)...)
	if !p.Deleted || p.Version != 3 || p.Name != "b" {
		t.Fatalf("after delete: %+v", p)
	}
	if _, err := p.Update(f); !errors.Is(err, domain.ErrRule) {
		t.Errorf("update after delete: %v, want ErrRule", err)
	}
	if _, err := p.Delete(""); !errors.Is(err, domain.ErrRule) {
		t.Errorf("delete twice: %v, want ErrRule", err)
	}
	if err := p.Apply(4, "Bogus", []byte(`{}`)); err == nil {
		t.Error("unknown event type must fail")
	}
}

// Fold equals Apply on every event in turn, for random histories, while
// decoding only the last full state.
func TestFoldEqualsApplyingEveryEvent(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	types := []string{EventCreated, EventUpdated, EventUpdated, EventDeleted}
	for round := range 500 {
		n := 1 + rng.IntN(12)
		var evs []Event
		var want Product
		for i := range n {
			typ := types[rng.IntN(len(types))]
			payload := []byte(fmt.Sprintf(`{"name":"n%d-%d","description":"d","price":%d,"stock":%d}`, round, i, rng.IntN(1000), rng.IntN(50)))
			if typ == EventDeleted {
				payload = []byte(`{"reason":"r"}`)
			}
			evs = append(evs, Event{Version: int64(i + 1), Type: typ, Payload: payload})
			if err := want.Apply(int64(i+1), typ, payload); err != nil {
				t.Fatal(err)
			}
		}
		got, err := Fold(evs)
		if err != nil || got != want {
			t.Fatalf("round %d: Fold = %+v, %v; Apply one by one = %+v (events %+v)", round, got, err, want, evs)
		}
	}
	// Only the last full state is decoded: an earlier broken payload is
	// never read, the last one is.
	broken := []Event{{1, EventCreated, []byte(`not json`)}, {2, EventUpdated, []byte(`{"name":"ok","price":1,"stock":1}`)}}
	if p, err := Fold(broken); err != nil || p.Name != "ok" || p.Version != 2 || !p.Exists {
		t.Fatalf("Fold = %+v, %v", p, err)
	}
	if _, err := Fold([]Event{{1, EventCreated, []byte(`{"name":"a","price":1,"stock":1}`)}, {2, EventUpdated, []byte(`{`)}}); err == nil {
		t.Fatal("a broken last state must fail")
	}
	if _, err := Fold([]Event{{1, "Bogus", []byte(`{}`)}}); err == nil {
		t.Fatal("an unknown event type must fail")
	}
}

// BenchmarkFold50 folds a 50-event history (a product updated 49 times):
// Fold against Apply on every event.
func BenchmarkFold50(b *testing.B) {
	evs := make([]Event, 50)
	for i := range evs {
		typ := EventUpdated
		if i == 0 {
			typ = EventCreated
		}
		evs[i] = Event{Version: int64(i + 1), Type: typ,
			Payload: []byte(fmt.Sprintf(`{"name":"product %d","description":"a product updated by the benchmark","price":%d,"stock":%d}`, i, 100+i, i))}
	}
	b.Run("Fold", func(b *testing.B) {
		for b.Loop() {
			if _, err := Fold(evs); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("ApplyEach", func(b *testing.B) {
		for b.Loop() {
			var p Product
			for _, e := range evs {
				if err := p.Apply(e.Version, e.Type, e.Payload); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
}
