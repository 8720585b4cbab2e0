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

func TestValidateCurrency(t *testing.T) {
	base := Input{Name: ptr("Lamp"), Price: "19.99", Stock: "3"}
	for _, c := range []struct {
		in   *string
		want string // "" with ok: absent
		ok   bool
	}{
		{nil, "", true}, {ptr("USD"), "USD", true}, {ptr("EUR"), "EUR", true}, {ptr("JPY"), "JPY", true}, {ptr("CHF"), "CHF", true},
		{ptr(""), "", false}, {ptr("usd"), "", false}, {ptr("EURO"), "", false}, {ptr("EU"), "", false}, {ptr("XXX"), "", false},
		{ptr("XTS"), "", false}, {ptr("ABC"), "", false}, {ptr(" EUR"), "", false}, {ptr("EU\x00"), "", false},
		{ptr(strings.Repeat("E", 10000)), "", false}, {ptr("ЕUR"), "", false}, // Cyrillic Е
	} {
		in := base
		in.Currency = c.in
		f, err := Validate(in)
		if c.ok {
			if err != nil || f.Currency != c.want {
				t.Errorf("currency %v: %+v %v, want %q", c.in, f, err, c.want)
			}
			continue
		}
		var ve *domain.ValidationError
		if !errors.As(err, &ve) || len(ve.Fields) != 1 || ve.Fields[0].Field != "currency" || strings.Contains(ve.Fields[0].Reason, "EEEE") {
			t.Errorf("currency %q: %v, want one error on currency, without the value", *c.in, err)
		}
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
		if err := p.Apply(Event{Version: int64(i + 1), Type: e.Type, SchemaVersion: e.SchemaVersion, Payload: b}); err != nil {
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
	if !p.Exists || p.Version != 1 || p.Price != 100 || p.Currency != DefaultCurrency || created[0].SchemaVersion != 2 {
		t.Fatalf("after create: %+v", p)
	}
	// An update without a currency keeps the product's; one with a
	// currency changes it.
	usd, err := p.Update(Fields{Name: "b", Price: 250, Stock: 2, Currency: "USD"})
	if err != nil || usd[0].Payload.(Fields).Currency != "USD" || usd[0].SchemaVersion != 2 {
		t.Fatalf("update to USD: %+v %v", usd, err)
	}
	p = fold(t, append(created, usd...)...)
	upd, err := p.Update(Fields{Name: "b", Price: 250, Stock: 2})
	if err != nil || upd[0].Type != EventUpdated || upd[0].Payload.(Fields).Currency != "USD" {
		t.Fatalf("update: %v %v", upd, err)
	}
	if c := Create(Fields{Name: "c", Currency: "JPY"}); c[0].Payload.(Fields).Currency != "JPY" {
		t.Errorf("create in JPY: %+v", c)
	}
	p = fold(t, created...)
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
	if err := p.Apply(Event{4, "Bogus", 1, []byte(`{}`)}); err == nil {
		t.Error("unknown event type must fail")
	}
}

// Fold reads the current schema versions only: a stored v1 that was not
// upcast, or a version from the future, is refused, never guessed.
func TestFoldRefusesOtherSchemaVersions(t *testing.T) {
	v2 := `{"name":"a","description":"","price":1,"currency":"EUR","stock":1}`
	for _, evs := range [][]Event{
		{{1, EventCreated, 1, []byte(`{"name":"a","description":"","price":1,"stock":1}`)}},
		{{1, EventCreated, 3, []byte(v2)}},
		{{1, EventCreated, 2, []byte(v2)}, {2, EventUpdated, 1, []byte(v2)}, {3, EventUpdated, 2, []byte(v2)}}, // skipped, still refused
		{{1, EventCreated, 2, []byte(v2)}, {2, EventDeleted, 2, []byte(`{}`)}},
		{{1, EventCreated, 0, []byte(v2)}},
		{{1, EventCreated, 2, []byte(`{"name":"a","description":"","price":1,"stock":1}`)}}, // v2 without a currency
	} {
		if p, err := Fold(evs); err == nil {
			t.Errorf("Fold(%+v) = %+v, want an error", evs, p)
		}
	}
}

// A snapshot is the state's JSON: decoding it gives the same state, and
// folding the rest of the history onto a snapshot taken at any version
// gives the same state as folding the whole history.
func TestFoldFromSnapshotEqualsFold(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for round := range 300 {
		evs := randomHistory(rng, round)
		want, err := Fold(evs)
		if err != nil {
			t.Fatal(err)
		}
		k := 1 + rng.IntN(len(evs)) // the store snapshots a product once it exists
		at, err := Fold(evs[:k])
		if err != nil {
			t.Fatal(err)
		}
		b, err := at.State()
		if err != nil {
			t.Fatal(err)
		}
		snap, err := FromState(b)
		if err != nil || snap != at {
			t.Fatalf("state %s decodes to %+v %v, want %+v", b, snap, err, at)
		}
		got, err := FoldFrom(snap, evs[k:])
		if err != nil || got != want {
			t.Fatalf("round %d: snapshot at %d + rest = %+v %v, want %+v", round, k, got, err, want)
		}
	}
	for _, bad := range []string{
		`{"version":"x"}`,
		`not json`,
		`null`,
		`{"version":0,"exists":false,"deleted":false,"name":"","description":"","price":0,"currency":"","stock":0}`,
		`{"version":2,"exists":true,"deleted":false,"name":"a","description":"","price":1,"currency":"","stock":1}`,
		`{"version":2,"exists":true,"deleted":false,"name":"a","description":"","price":1,"currency":"EUR","stock":1,"colour":"red"}`,
		`{"version":2,"exists":true,"deleted":false,"name":"a","description":"","price":1,"currency":"EUR","stock":1} {}`,
	} {
		if p, err := FromState([]byte(bad)); err == nil {
			t.Errorf("FromState(%s) = %+v, want an error", bad, p)
		}
	}
}

// randomHistory is a valid history of 1..12 events: a create, then
// updates and deletes in any order (as stored; the domain would refuse
// an update after a delete, the fold must not care).
func randomHistory(rng *rand.Rand, round int) []Event {
	types := []string{EventUpdated, EventUpdated, EventDeleted}
	currencies := []string{"EUR", "USD", "JPY"}
	n := 1 + rng.IntN(12)
	var evs []Event
	for i := range n {
		typ := EventCreated
		if i > 0 {
			typ = types[rng.IntN(len(types))]
		}
		payload := []byte(fmt.Sprintf(`{"name":"n%d-%d","description":"d","price":%d,"currency":%q,"stock":%d}`,
			round, i, rng.IntN(1000), currencies[rng.IntN(3)], rng.IntN(50)))
		if typ == EventDeleted {
			payload = []byte(`{"reason":"r"}`)
		}
		evs = append(evs, Event{Version: int64(i + 1), Type: typ, SchemaVersion: SchemaVersion(typ), Payload: payload})
	}
	return evs
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
			payload := []byte(fmt.Sprintf(`{"name":"n%d-%d","description":"d","price":%d,"currency":"USD","stock":%d}`, round, i, rng.IntN(1000), rng.IntN(50)))
			if typ == EventDeleted {
				payload = []byte(`{"reason":"r"}`)
			}
			e := Event{Version: int64(i + 1), Type: typ, SchemaVersion: SchemaVersion(typ), Payload: payload}
			evs = append(evs, e)
			if err := want.Apply(e); err != nil {
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
	broken := []Event{{1, EventCreated, 2, []byte(`not json`)}, {2, EventUpdated, 2, []byte(`{"name":"ok","price":1,"currency":"EUR","stock":1}`)}}
	if p, err := Fold(broken); err != nil || p.Name != "ok" || p.Version != 2 || !p.Exists {
		t.Fatalf("Fold = %+v, %v", p, err)
	}
	if _, err := Fold([]Event{{1, EventCreated, 2, []byte(`{"name":"a","price":1,"currency":"EUR","stock":1}`)}, {2, EventUpdated, 2, []byte(`{`)}}); err == nil {
		t.Fatal("a broken last state must fail")
	}
	if _, err := Fold([]Event{{1, "Bogus", 1, []byte(`{}`)}}); err == nil {
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
		evs[i] = Event{Version: int64(i + 1), Type: typ, SchemaVersion: 2,
			Payload: []byte(fmt.Sprintf(`{"name":"product %d","description":"a product updated by the benchmark","price":%d,"currency":"EUR","stock":%d}`, i, 100+i, i))}
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
				if err := p.Apply(e); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
}
