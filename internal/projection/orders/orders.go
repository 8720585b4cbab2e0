// Package orders is the orders read-model projection: order events → one
// document per order with its lifecycle status
// (schemas/elasticsearch/orders.json).
package orders

import (
	"cqrsflow/internal/envelope"
	"cqrsflow/internal/projection"
)

// Event types of the order aggregate.
const (
	Created   = "OrderCreated"
	Paid      = "OrderPaid"
	Shipped   = "OrderShipped"
	Cancelled = "OrderCancelled"
)

// Statuses of an order document.
const (
	StatusCreated   = "created"
	StatusPaid      = "paid"
	StatusShipped   = "shipped"
	StatusCancelled = "cancelled"
)

// Doc is an order document.
type Doc struct {
	projection.Base
	UserID     string  `json:"user_id"`
	ProductID  string  `json:"product_id"`
	Quantity   int64   `json:"quantity"`
	TotalPrice float64 `json:"total_price"`
	Status     string  `json:"status"`
}

var statusOf = map[string]string{Paid: StatusPaid, Shipped: StatusShipped, Cancelled: StatusCancelled}

// Apply folds env onto cur (nil: no document yet) and returns the new
// document. The domain enforces the status machine; the projection records
// what happened (the event store is the truth) but refuses events that
// cannot start or continue a document.
func Apply(cur *Doc, env *envelope.Envelope) (*Doc, error) {
	if env.AggregateType != "order" {
		return nil, projection.Unprojectable("aggregate_type %q is not order", env.AggregateType)
	}
	if env.EventType == Created {
		if cur != nil {
			return nil, projection.Unprojectable("OrderCreated for existing order %s", cur.ID)
		}
		var p struct {
			UserID     *string  `json:"user_id"`
			ProductID  *string  `json:"product_id"`
			Quantity   *int64   `json:"quantity"`
			TotalPrice *float64 `json:"total_price"`
		}
		if err := projection.DecodePayload(env, &p); err != nil {
			return nil, err
		}
		if p.UserID == nil || p.ProductID == nil || p.Quantity == nil || p.TotalPrice == nil {
			return nil, projection.Unprojectable("OrderCreated payload misses user_id, product_id, quantity or total_price")
		}
		return &Doc{Base: projection.Start(env), UserID: *p.UserID, ProductID: *p.ProductID,
			Quantity: *p.Quantity, TotalPrice: *p.TotalPrice, Status: StatusCreated}, nil
	}
	status, ok := statusOf[env.EventType]
	if !ok {
		return nil, projection.Unprojectable("unknown order event type %q", env.EventType)
	}
	if cur == nil {
		return nil, projection.Unprojectable("%s cannot start an order (no document)", env.EventType)
	}
	var p map[string]any
	if err := projection.DecodePayload(env, &p); err != nil {
		return nil, err
	}
	next := *cur
	next.Status = status
	next.Advance(env)
	return &next, nil
}

// Projection is the orders projection for the projector runtime.
var Projection = projection.Adapter[Doc]{ProjectionName: "orders", Aggregate: "order",
	MappingFile: "elasticsearch/orders.json", Fold: Apply,
	Versions: map[string]int{Created: 1, Paid: 1, Shipped: 1, Cancelled: 1}}
