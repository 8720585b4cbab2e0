package command

import (
	"context"
	"fmt"

	"github.com/google/uuid"

	"cqrsflow/internal/domain"
	"cqrsflow/internal/domain/order"
	"cqrsflow/internal/eventstore"
)

// CreateOrder creates an order with a new id.
type CreateOrder struct {
	Order   order.Created
	Request Request
}

// CreateOrderHandler handles CreateOrder.
type CreateOrderHandler struct{ x *executor }

// Handle creates the order; Result.ID is its new id.
func (h CreateOrderHandler) Handle(ctx context.Context, cmd CreateOrder) (Result, error) {
	return h.x.run(ctx, cmd.Request, plan{aggType: order.AggregateType, id: uuid.NewString(), expected: eventstore.NoAggregate,
		decide: func([]eventstore.Event) ([]domain.Event, error) { return order.Create(cmd.Order), nil }})
}

// PayOrder marks a created order paid.
type PayOrder struct {
	ID               string
	ExpectedVersion  int64 // 0: whatever the current version is
	PaymentReference string
	Request          Request
}

// PayOrderHandler handles PayOrder.
type PayOrderHandler struct{ x *executor }

// Handle pays the order, or fails with a *domain.RuleError
// (illegal_transition) unless it is created.
func (h PayOrderHandler) Handle(ctx context.Context, cmd PayOrder) (Result, error) {
	return h.x.transition(ctx, cmd.ID, cmd.ExpectedVersion, cmd.Request, func(o *order.Order) ([]domain.Event, error) {
		return o.Pay(cmd.PaymentReference)
	})
}

// ShipOrder ships a paid order.
type ShipOrder struct {
	ID              string
	ExpectedVersion int64 // 0: whatever the current version is
	TrackingNumber  string
	Request         Request
}

// ShipOrderHandler handles ShipOrder.
type ShipOrderHandler struct{ x *executor }

// Handle ships the order, or fails with a *domain.RuleError
// (illegal_transition) unless it is paid.
func (h ShipOrderHandler) Handle(ctx context.Context, cmd ShipOrder) (Result, error) {
	return h.x.transition(ctx, cmd.ID, cmd.ExpectedVersion, cmd.Request, func(o *order.Order) ([]domain.Event, error) {
		return o.Ship(cmd.TrackingNumber)
	})
}

// CancelOrder cancels an order that is not shipped.
type CancelOrder struct {
	ID              string
	ExpectedVersion int64 // 0: whatever the current version is
	Reason          string
	Request         Request
}

// CancelOrderHandler handles CancelOrder.
type CancelOrderHandler struct{ x *executor }

// Handle cancels the order, or fails with a *domain.RuleError
// (illegal_transition) once it is shipped or cancelled.
func (h CancelOrderHandler) Handle(ctx context.Context, cmd CancelOrder) (Result, error) {
	return h.x.transition(ctx, cmd.ID, cmd.ExpectedVersion, cmd.Request, func(o *order.Order) ([]domain.Event, error) {
		return o.Cancel(cmd.Reason)
	})
}

// transition runs one lifecycle step of the order id: fold, then step.
func (x *executor) transition(ctx context.Context, id string, expected int64, req Request,
	step func(*order.Order) ([]domain.Event, error)) (Result, error) {
	exp, err := expect(expected)
	if err != nil {
		return Result{}, err
	}
	return x.run(ctx, req, plan{aggType: order.AggregateType, id: id, expected: exp,
		decide: func(history []eventstore.Event) ([]domain.Event, error) {
			o, err := foldOrder(history)
			if err != nil {
				return nil, err
			}
			return step(o)
		}})
}

func foldOrder(history []eventstore.Event) (*order.Order, error) {
	evs := make([]order.Event, len(history))
	for i, e := range history {
		evs[i] = order.Event{Version: e.Version, Type: e.Type, Payload: e.Payload}
	}
	o, err := order.Fold(evs)
	if err != nil {
		return nil, fmt.Errorf("folding order: %w", err)
	}
	return &o, nil
}
