package command

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"cqrsflow/internal/domain"
	"cqrsflow/internal/domain/product"
	"cqrsflow/internal/eventstore"
	"cqrsflow/internal/upcast"
)

// mixedProductHistory is a product history as stored across the v2
// deploy: a create, then updates and a delete, each create/update
// written at v1 (no currency) or at v2.
func mixedProductHistory(rng *rand.Rand, n int) []eventstore.Event {
	var out []eventstore.Event
	for i := range n {
		typ := product.EventUpdated
		switch {
		case i == 0:
			typ = product.EventCreated
		case rng.IntN(8) == 0:
			out = append(out, eventstore.Event{Version: int64(i + 1), Type: product.EventDeleted, SchemaVersion: 1,
				Payload: []byte(`{"reason":"r"}`)})
			continue
		}
		e := eventstore.Event{Version: int64(i + 1), Type: typ, SchemaVersion: 1,
			Payload: fmt.Appendf(nil, `{"name":"p%d","description":"<d>","price":%d.5,"stock":%d}`, i, rng.IntN(100), i)}
		if rng.IntN(2) == 0 {
			e.SchemaVersion = 2
			e.Payload = fmt.Appendf(nil, `{"name":"p%d","description":"<d>","price":%d.5,"currency":"USD","stock":%d}`, i, rng.IntN(100), i)
		}
		out = append(out, e)
	}
	return out
}

// The write side's fold over a mixed v1/v2 history equals the fold over
// the same history upcast first, and equals folding the rest of it onto
// a snapshot taken anywhere.
func TestFoldOfMixedHistoryEqualsFoldOfUpcastHistory(t *testing.T) {
	f := newFixture(t, &fakeRepo{})
	x := f.h.UpdateProduct.x
	noop := decider(x, productFold, func(*product.Product) ([]domain.Event, error) { return nil, nil })
	up := upcast.Events()
	rng := rand.New(rand.NewPCG(5, 6))
	sawV1 := 0
	for round := range 200 {
		mixed := mixedProductHistory(rng, 1+rng.IntN(15))
		upcasted := make([]eventstore.Event, len(mixed))
		for i, e := range mixed {
			if e.SchemaVersion == 1 && e.Type != product.EventDeleted {
				sawV1++
			}
			p, v, err := up.Upcast("product", e.Type, e.SchemaVersion, e.Payload)
			if err != nil {
				t.Fatal(err)
			}
			e.Payload, e.SchemaVersion = p, v
			upcasted[i] = e
		}
		got, err := noop(nil, mixed)
		if err != nil {
			t.Fatal(err)
		}
		want, err := noop(nil, upcasted)
		if err != nil {
			t.Fatal(err)
		}
		if string(got.State) != string(want.State) {
			t.Fatalf("round %d: mixed %s, upcast first %s", round, got.State, want.State)
		}
		k := 1 + rng.IntN(len(mixed))
		at, err := noop(nil, mixed[:k])
		if err != nil {
			t.Fatal(err)
		}
		from, err := noop(&eventstore.Snapshot{Version: int64(k), SchemaVersion: product.StateVersion, State: at.State}, mixed[k:])
		if err != nil || string(from.State) != string(want.State) {
			t.Fatalf("round %d: snapshot at %d + rest = %s %v, want %s", round, k, from.State, err, want.State)
		}
	}
	if sawV1 == 0 {
		t.Fatal("no v1 event was generated")
	}
}

// A command decides on the state a snapshot holds, and leaves the state
// after its events as the next snapshot.
func TestDeciderWritesTheStateAfterItsEvents(t *testing.T) {
	f := newFixture(t, &fakeRepo{})
	x := f.h.UpdateProduct.x
	hist := history(t, product.Create(product.Fields{Name: "a", Price: 100, Currency: "JPY", Stock: 1})...)
	at, _ := decider(x, productFold, func(*product.Product) ([]domain.Event, error) { return nil, nil })(nil, hist)
	upd := decider(x, productFold, func(p *product.Product) ([]domain.Event, error) {
		return p.Update(product.Fields{Name: "b", Price: 200, Stock: 2})
	})
	d, err := upd(&eventstore.Snapshot{Version: 1, SchemaVersion: product.StateVersion, State: at.State}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Events) != 1 || string(d.Events[0].Payload) != `{"name":"b","description":"","price":2,"currency":"JPY","stock":2}` {
		t.Errorf("events %+v (an update without a currency keeps the product's)", d.Events)
	}
	p, err := product.FromState(d.State)
	if err != nil || p.Version != 2 || p.Name != "b" || p.Currency != "JPY" {
		t.Errorf("state after the update %s: %+v %v", d.State, p, err)
	}
}

// A snapshot that does not decode, or whose state is not at the version
// its row says, is refused with ErrSnapshotInvalid (the store then hands
// the whole history), never folded on.
func TestDeciderRefusesBrokenSnapshots(t *testing.T) {
	f := newFixture(t, &fakeRepo{})
	x := f.h.UpdateProduct.x
	ok := `{"version":3,"exists":true,"deleted":false,"name":"a","description":"","price":1,"currency":"EUR","stock":1}`
	upd := decider(x, productFold, func(p *product.Product) ([]domain.Event, error) {
		return p.Update(product.Fields{Name: "b", Price: 200, Stock: 2})
	})
	for _, s := range []eventstore.Snapshot{
		{Version: 3, State: []byte(`{"version":3`)},
		{Version: 3, State: []byte(`"x"`)},
		{Version: 4, State: []byte(ok)},
		{Version: 3, State: []byte(`{"version":3,"exists":true,"name":"a","currency":"EUR","colour":1}`)},
	} {
		if _, err := upd(&s, nil); !errors.Is(err, eventstore.ErrSnapshotInvalid) {
			t.Errorf("snapshot %s at v%d: %v, want ErrSnapshotInvalid", s.State, s.Version, err)
		}
	}
	if _, err := upd(&eventstore.Snapshot{Version: 3, State: []byte(ok)}, nil); err != nil {
		t.Errorf("a sound snapshot: %v", err)
	}
}
