package order

import (
	"encoding/json"
	"errors"
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
		if err := o.Apply(o.Version+1, e.Type, b); err != nil {
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
