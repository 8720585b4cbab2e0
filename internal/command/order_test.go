package command

import (
	"context"
	"errors"
	"strings"
	"testing"

	"cqrsflow/internal/domain"
	"cqrsflow/internal/domain/order"
	"cqrsflow/internal/eventschema"
	"cqrsflow/internal/eventstore"
)

var validOrder = order.Created{UserID: "u1", ProductID: "p1", Quantity: 2, TotalPrice: 3998}

func TestCreateOrder(t *testing.T) {
	var appended []eventstore.NewEvent
	repo := storeLike(nil, &appended)
	f := newFixture(t, repo)
	r := req
	r.Status = 202
	res, err := f.h.CreateOrder.Handle(context.Background(), CreateOrder{Order: validOrder, Request: r})
	if err != nil {
		t.Fatal(err)
	}
	cmd := repo.last(t)
	if cmd.AggregateType != "order" || !isUUID(cmd.AggregateID) || cmd.ExpectedVersion != eventstore.NoAggregate {
		t.Errorf("command %+v", cmd)
	}
	if res.ID != cmd.AggregateID || res.Version != 1 || res.Status != 202 {
		t.Errorf("result %+v", res)
	}
	if len(appended) != 1 || appended[0].Type != "OrderCreated" ||
		string(appended[0].Payload) != `{"user_id":"u1","product_id":"p1","quantity":2,"total_price":39.98}` {
		t.Errorf("appended %+v", appended)
	}
	if n := f.counter(t, "cqrsflow_events_appended_total", "order", "OrderCreated"); n != 1 {
		t.Errorf("appended metric %v", n)
	}
}

// orderHistory is a created order after the given lifecycle events.
func orderHistory(t *testing.T, after ...domain.Event) []eventstore.Event {
	t.Helper()
	return history(t, append(order.Create(validOrder), after...)...)
}

var (
	paid      = domain.Event{Type: order.EventPaid, SchemaVersion: 1, Payload: order.Paid{}}
	shipped   = domain.Event{Type: order.EventShipped, SchemaVersion: 1, Payload: order.Shipped{}}
	cancelled = domain.Event{Type: order.EventCancelled, SchemaVersion: 1, Payload: order.Cancelled{}}
)

func TestOrderTransitions(t *testing.T) {
	ctx := context.Background()
	pay := func(h *Handlers, exp int64) (Result, error) {
		return h.PayOrder.Handle(ctx, PayOrder{ID: "o1", ExpectedVersion: exp, PaymentReference: "pay-7", Request: req})
	}
	ship := func(h *Handlers, exp int64) (Result, error) {
		return h.ShipOrder.Handle(ctx, ShipOrder{ID: "o1", ExpectedVersion: exp, TrackingNumber: "trk-7", Request: req})
	}
	cancel := func(h *Handlers, exp int64) (Result, error) {
		return h.CancelOrder.Handle(ctx, CancelOrder{ID: "o1", ExpectedVersion: exp, Reason: "changed mind", Request: req})
	}
	cases := []struct {
		name    string
		before  []domain.Event
		action  func(*Handlers, int64) (Result, error)
		event   string // "" when the transition is illegal
		payload string
	}{
		{"pay created", nil, pay, "OrderPaid", `{"payment_reference":"pay-7"}`},
		{"ship created", nil, ship, "", ""},
		{"cancel created", nil, cancel, "OrderCancelled", `{"reason":"changed mind"}`},
		{"ship paid", []domain.Event{paid}, ship, "OrderShipped", `{"tracking_number":"trk-7"}`},
		{"pay paid", []domain.Event{paid}, pay, "", ""},
		{"cancel paid", []domain.Event{paid}, cancel, "OrderCancelled", `{"reason":"changed mind"}`},
		{"cancel shipped", []domain.Event{paid, shipped}, cancel, "", ""},
		{"pay cancelled", []domain.Event{cancelled}, pay, "", ""},
		{"cancel cancelled", []domain.Event{cancelled}, cancel, "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			hist := orderHistory(t, tc.before...)
			var appended []eventstore.NewEvent
			repo := storeLike(hist, &appended)
			f := newFixture(t, repo)
			res, err := tc.action(f.h, int64(len(hist)))
			if repo.last(t).AggregateType != "order" || repo.last(t).AggregateID != "o1" || repo.last(t).ExpectedVersion != int64(len(hist)) {
				t.Errorf("command %+v", repo.last(t))
			}
			if tc.event == "" {
				var re *domain.RuleError
				if !errors.As(err, &re) || re.Code != "illegal_transition" || appended != nil {
					t.Fatalf("got %+v, %v (appended %+v), want illegal_transition", res, err, appended)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := int64(len(hist) + 1)
			if res.ID != "o1" || res.Version != want || len(appended) != 1 || appended[0].Type != tc.event || string(appended[0].Payload) != tc.payload {
				t.Fatalf("result %+v, appended %+v", res, appended)
			}
		})
	}
}

func TestOrderRefusals(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, storeLike(nil, nil))
	if _, err := f.h.PayOrder.Handle(ctx, PayOrder{ID: "o", Request: req}); !errors.Is(err, domain.ErrNotFound) {
		t.Errorf("pay an unknown order: %v", err)
	}
	f = newFixture(t, storeLike(orderHistory(t, paid), nil))
	_, err := f.h.ShipOrder.Handle(ctx, ShipOrder{ID: "o", ExpectedVersion: 1, Request: req})
	var ce *eventstore.ConflictError
	if !errors.As(err, &ce) || ce.Current != 2 {
		t.Errorf("stale ship: %v", err)
	}
	if n := f.counter(t, "cqrsflow_command_conflicts_total", "order"); n != 1 {
		t.Errorf("conflict metric %v", n)
	}
}

func TestOrderSchemaFailure(t *testing.T) {
	ctx := context.Background()
	long := strings.Repeat("x", 201)
	for _, tc := range []struct {
		name string
		hist []eventstore.Event
		run  func(h *Handlers) error
	}{
		{"zero quantity", nil, func(h *Handlers) error {
			_, err := h.CreateOrder.Handle(ctx, CreateOrder{Order: order.Created{UserID: "u", ProductID: "p"}, Request: req})
			return err
		}},
		{"long payment reference", orderHistory(t), func(h *Handlers) error {
			_, err := h.PayOrder.Handle(ctx, PayOrder{ID: "o", PaymentReference: long, Request: req})
			return err
		}},
		{"long tracking number", orderHistory(t, paid), func(h *Handlers) error {
			_, err := h.ShipOrder.Handle(ctx, ShipOrder{ID: "o", TrackingNumber: long, Request: req})
			return err
		}},
	} {
		var appended []eventstore.NewEvent
		f := newFixture(t, storeLike(tc.hist, &appended))
		err := tc.run(f.h)
		var ie *eventschema.InvalidError
		if !errors.As(err, &ie) || len(ie.Violations) == 0 {
			t.Errorf("%s: %v, want a schema violation", tc.name, err)
		}
		if appended != nil {
			t.Errorf("%s: appended %+v", tc.name, appended)
		}
	}
}

// A principal bound to users creates orders only for them and changes
// only their orders; another user's order answers ErrNotOwner whatever
// the expected version, so neither its existence nor its version leaks.
func TestOrdersOfBoundPrincipals(t *testing.T) {
	ctx := context.Background()
	own := req
	own.Users = []string{"u0", "u1"} // validOrder belongs to u1
	other := req
	other.Users = []string{"u2"}

	var appended []eventstore.NewEvent
	repo := storeLike(nil, &appended)
	f := newFixture(t, repo)
	if _, err := f.h.CreateOrder.Handle(ctx, CreateOrder{Order: validOrder, Request: other}); !errors.Is(err, ErrUserNotAllowed) {
		t.Errorf("create for another user: %v", err)
	}
	if len(repo.calls) != 0 || appended != nil {
		t.Errorf("a refused create reached the store: %+v", repo.calls)
	}
	if _, err := f.h.CreateOrder.Handle(ctx, CreateOrder{Order: validOrder, Request: own}); err != nil {
		t.Errorf("create for an own user: %v", err)
	}

	hist := orderHistory(t, paid) // version 2
	for _, tc := range []struct {
		name string
		r    Request
		exp  int64
		want error
		conf bool
	}{
		{"other user, no version", other, 0, ErrNotOwner, false},
		{"other user, right version", other, 2, ErrNotOwner, false},
		{"other user, stale version", other, 1, ErrNotOwner, false},
		{"other user, future version", other, 9, ErrNotOwner, false},
		{"owner, stale version", own, 1, eventstore.ErrVersionConflict, true},
		{"owner, right version", own, 2, nil, false},
		{"owner, no version", own, 0, nil, false},
		{"unbound, right version", req, 2, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var appended []eventstore.NewEvent
			repo := storeLike(hist, &appended)
			f := newFixture(t, repo)
			res, err := f.h.ShipOrder.Handle(ctx, ShipOrder{ID: "o1", ExpectedVersion: tc.exp, Request: tc.r})
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("got %+v, %v; want %v", res, err, tc.want)
			}
			var ce *eventstore.ConflictError
			if tc.conf && (!errors.As(err, &ce) || ce.Current != 2 || ce.Expected != 1) {
				t.Errorf("conflict %v", err)
			}
			if tc.want != nil && appended != nil {
				t.Errorf("appended %+v", appended)
			}
			if tc.want == nil && (res.Version != 3 || len(appended) != 1) {
				t.Errorf("result %+v appended %+v", res, appended)
			}
			if n := f.counter(t, "cqrsflow_command_conflicts_total", "order"); (n == 1) != tc.conf {
				t.Errorf("conflict metric %v", n)
			}
		})
	}
	f = newFixture(t, storeLike(nil, nil))
	if _, err := f.h.CancelOrder.Handle(ctx, CancelOrder{ID: "o9", ExpectedVersion: 3, Request: other}); !errors.Is(err, domain.ErrNotFound) {
		t.Errorf("bound principal, unknown order: %v", err)
	}
}
