package order

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"cqrsflow/internal/domain"
)

func ptr(s string) *string { return &s }

func TestValidate(t *testing.T) {
	c, err := Validate(Input{UserID: ptr("u1"), ProductID: ptr("p1"), Quantity: "2", TotalPrice: "39.98"})
	if err != nil || c.Quantity != 2 || c.TotalPrice != 3998 {
		t.Fatalf("valid: %+v %v", c, err)
	}
	cases := map[string]struct {
		in    Input
		field string
	}{
		"no user":        {Input{ProductID: ptr("p"), Quantity: "1", TotalPrice: "0"}, "user_id"},
		"no product":     {Input{UserID: ptr("u"), Quantity: "1", TotalPrice: "0"}, "product_id"},
		"zero quantity":  {Input{UserID: ptr("u"), ProductID: ptr("p"), Quantity: "0", TotalPrice: "0"}, "quantity"},
		"negative total": {Input{UserID: ptr("u"), ProductID: ptr("p"), Quantity: "1", TotalPrice: "-0.01"}, "total_price"},
	}
	for name, tc := range cases {
		_, err := Validate(tc.in)
		var ve *domain.ValidationError
		if !errors.As(err, &ve) || len(ve.Fields) != 1 || ve.Fields[0].Field != tc.field {
			t.Errorf("%s: %v, want one error on %s", name, err, tc.field)
		}
	}
}

func apply(t *testing.T, o *Order, evs []domain.Event, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range evs {
		b, _ := json.Marshal(e.Payload)
		if err := o.Apply(Event{o.Version + 1, e.Type, e.SchemaVersion, b}); err != nil {
			t.Fatal(err)
		}
	}
}

func TestTransitions(t *testing.T) {
	type step func(o *Order) ([]domain.Event, error)
	pay := func(o *Order) ([]domain.Event, error) { return o.Pay("ref") }
	ship := func(o *Order) ([]domain.Event, error) { return o.Ship("trk") }
	cancel := func(o *Order) ([]domain.Event, error) { return o.Cancel("why") }
	newOrder := func(t *testing.T) *Order {
		var o Order
		apply(t, &o, Create(Created{UserID: "u", ProductID: "p", Quantity: 1}), nil)
		return &o
	}
	cases := []struct {
		name    string
		before  []step
		action  step
		allowed bool
	}{
		{"pay created", nil, pay, true},
		{"ship created", nil, ship, false},
		{"cancel created", nil, cancel, true},
		{"ship paid", []step{pay}, ship, true},
		{"pay paid", []step{pay}, pay, false},
		{"cancel paid", []step{pay}, cancel, true},
		{"cancel shipped", []step{pay, ship}, cancel, false},
		{"ship shipped", []step{pay, ship}, ship, false},
		{"pay cancelled", []step{cancel}, pay, false},
		{"ship cancelled", []step{cancel}, ship, false},
		{"cancel cancelled", []step{cancel}, cancel, false},
	}
	for _, c := range cases {
		o := newOrder(t)
		for _, s := range c.before {
			evs, err := s(o)
			apply(t, o, evs, err)
		}
		_, err := c.action(o)
		if c.allowed && err != nil {
			t.Errorf("%s: %v", c.name, err)
		}
		if !c.allowed && !errors.Is(err, domain.ErrRule) {
			t.Errorf("%s: got %v, want ErrRule", c.name, err)
		}
	}
	var unknown Order
	if _, err := unknown.Pay(""); !errors.Is(err, domain.ErrNotFound) {
		t.Errorf("pay unknown: %v", err)
	}
}

// Fold equals Apply on every event in turn, for random histories
// (including lifecycles the domain would refuse: Fold replays what is
// stored, it does not judge it).
func TestFoldEqualsApplyingEveryEvent(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	types := []string{EventCreated, EventPaid, EventShipped, EventCancelled}
	for round := range 500 {
		n := 1 + rng.IntN(8)
		var evs []Event
		var want Order
		for i := range n {
			typ := types[rng.IntN(len(types))]
			if i == 0 {
				typ = EventCreated
			}
			payload := []byte(`{}`)
			switch typ {
			case EventCreated:
				payload = fmt.Appendf(nil, `{"user_id":"u%d-%d","product_id":"p%d","quantity":%d,"total_price":%d.%02d}`,
					round, i, rng.IntN(100), 1+rng.IntN(9), rng.IntN(1000), rng.IntN(100))
			case EventPaid:
				payload = []byte(`{"payment_reference":"ref"}`)
			}
			e := Event{Version: int64(i + 1), Type: typ, SchemaVersion: 1, Payload: payload}
			evs = append(evs, e)
			if err := want.Apply(e); err != nil {
				t.Fatal(err)
			}
		}
		got, err := Fold(evs)
		if err != nil || got != want {
			t.Fatalf("round %d: Fold = %+v, %v; Apply one by one = %+v (events %+v)", round, got, err, want, evs)
		}
		// From a snapshot taken anywhere in the history: the same state.
		k := 1 + rng.IntN(n) // the store snapshots an order once it exists
		at, _ := Fold(evs[:k])
		b, err := at.State()
		if err != nil {
			t.Fatal(err)
		}
		snap, err := FromState(b)
		if err != nil || snap != at {
			t.Fatalf("state %s decodes to %+v %v, want %+v", b, snap, err, at)
		}
		if got, err := FoldFrom(snap, evs[k:]); err != nil || got != want {
			t.Fatalf("round %d: snapshot at %d + rest = %+v %v, want %+v", round, k, got, err, want)
		}
	}
	if _, err := Fold([]Event{{1, EventCreated, 2, []byte(`{"user_id":"u","product_id":"p","quantity":1,"total_price":1}`)}}); err == nil {
		t.Fatal("an unknown schema version must fail")
	}
	for _, bad := range []string{
		`{"version":0,"status":"","user_id":"","product_id":"","quantity":0,"total_price":0}`,
		`{"version":1,"status":"lost","user_id":"u","product_id":"p","quantity":1,"total_price":1}`,
		`{"version":1,"status":"paid","user_id":"","product_id":"p","quantity":1,"total_price":1}`,
		`{"version":1,"status":"paid","user_id":"u","product_id":"p","quantity":1,"total_price":1,"x":1}`,
		`[]`,
	} {
		if o, err := FromState([]byte(bad)); err == nil {
			t.Errorf("FromState(%s) = %+v, want an error", bad, o)
		}
	}
	var empty Order
	if o, err := Fold(nil); err != nil || o != empty || o.Exists() {
		t.Fatalf("Fold(nil) = %+v, %v; want the zero order", o, err)
	}
	if _, err := Fold([]Event{{1, EventCreated, 1, []byte(`not json`)}}); err == nil {
		t.Fatal("a broken OrderCreated payload must fail")
	}
	if _, err := Fold([]Event{{1, EventCreated, 1, []byte(`{"user_id":"u","product_id":"p","quantity":1,"total_price":1}`)}, {2, "Bogus", 1, []byte(`{}`)}}); err == nil {
		t.Fatal("an unknown event type must fail")
	}
}
