package command

import (
	"context"

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

// Handle creates the order; Result.ID is its new id. A principal bound
// to users gets ErrUserNotAllowed for an order of another user.
func (h CreateOrderHandler) Handle(ctx context.Context, cmd CreateOrder) (Result, error) {
	if !actsFor(cmd.Request.Users, cmd.Order.UserID) {
		return Result{}, ErrUserNotAllowed
	}
	return h.x.run(ctx, cmd.Request, orderPlan(h.x, uuid.NewString(), eventstore.NoAggregate,
		func(*order.Order) ([]domain.Event, error) { return order.Create(cmd.Order), nil }))
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
//
// For a principal bound to users the store checks no expected version:
// its answer (a 409 with the current version) would come before the fold
// and tell who does not own the order that it exists. The order is
// locked and folded all the same, then ownership is checked first and
// the expected version second, so the answer to someone else's order is
// always ErrNotOwner.
func (x *executor) transition(ctx context.Context, id string, expected int64, req Request,
	step func(*order.Order) ([]domain.Event, error)) (Result, error) {
	exp, err := expect(expected)
	if err != nil {
		return Result{}, err
	}
	bound := len(req.Users) > 0
	storeExp := exp
	if bound {
		storeExp = eventstore.AnyVersion
	}
	return x.run(ctx, req, orderPlan(x, id, storeExp,
		func(o *order.Order) ([]domain.Event, error) {
			if bound {
				switch {
				case !o.Exists():
					return nil, domain.ErrNotFound
				case !actsFor(req.Users, o.UserID):
					return nil, ErrNotOwner
				case exp != eventstore.AnyVersion && o.Version != exp:
					return nil, &eventstore.ConflictError{AggregateType: order.AggregateType, AggregateID: id,
						Expected: exp, Current: o.Version}
				}
			}
			return step(o)
		}))
}
