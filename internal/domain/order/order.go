// Package order is the order aggregate: create, then the lifecycle
// created → paid → shipped, with cancel allowed before shipping. It is
// pure: no SQL, no HTTP.
package order

import (
	"encoding/json"
	"fmt"

	"cqrsflow/internal/domain"
)

// AggregateType is the aggregate_type of orders.
const AggregateType = "order"

// Event types (schema version 1).
const (
	EventCreated   = "OrderCreated"
	EventPaid      = "OrderPaid"
	EventShipped   = "OrderShipped"
	EventCancelled = "OrderCancelled"
)

// Limits of the order fields.
const (
	MaxID        = 100
	MaxReference = 200
	MaxReason    = 1000
)

// Status is the lifecycle state of an order.
type Status string

// Statuses.
const (
	StatusCreated   Status = "created"
	StatusPaid      Status = "paid"
	StatusShipped   Status = "shipped"
	StatusCancelled Status = "cancelled"
)

// Created is the payload of OrderCreated v1.
type Created struct {
	UserID     string       `json:"user_id"`
	ProductID  string       `json:"product_id"`
	Quantity   int64        `json:"quantity"`
	TotalPrice domain.Money `json:"total_price"`
}

// Paid is the payload of OrderPaid v1.
type Paid struct {
	PaymentReference string `json:"payment_reference,omitempty"`
}

// Shipped is the payload of OrderShipped v1.
type Shipped struct {
	TrackingNumber string `json:"tracking_number,omitempty"`
}

// Cancelled is the payload of OrderCancelled v1.
type Cancelled struct {
	Reason string `json:"reason,omitempty"`
}

// Input is a create command as the client sent it (numbers as literals).
type Input struct {
	UserID     *string
	ProductID  *string
	Quantity   string
	TotalPrice string
}

// Validate checks every field rule of a create at once.
func Validate(in Input) (Created, error) {
	var errs domain.Errs
	var c Created
	if in.UserID == nil {
		errs.Add("user_id", "is required")
	} else {
		domain.String(&errs, "user_id", *in.UserID, 1, MaxID, true)
		c.UserID = *in.UserID
	}
	if in.ProductID == nil {
		errs.Add("product_id", "is required")
	} else {
		domain.String(&errs, "product_id", *in.ProductID, 1, MaxID, true)
		c.ProductID = *in.ProductID
	}
	if q, reason := domain.ParseInt(in.Quantity, 1); reason != "" {
		errs.Add("quantity", reason)
	} else {
		c.Quantity = q
	}
	if p, reason := domain.ParseMoney(in.TotalPrice); reason != "" {
		errs.Add("total_price", reason)
	} else {
		c.TotalPrice = p
	}
	return c, errs.Err()
}

// ValidateText checks an optional lifecycle text field (reference,
// tracking number, reason).
func ValidateText(field, v string) error {
	var errs domain.Errs
	max := MaxReference
	if field == "reason" {
		max = MaxReason
	}
	domain.String(&errs, field, v, 0, max, false)
	return errs.Err()
}

// Order is the state folded from an order's events.
type Order struct {
	Version int64
	Status  Status
	Created
}

// Exists reports whether the order was created.
func (o *Order) Exists() bool { return o.Status != "" }

// Apply folds one event into the state.
func (o *Order) Apply(version int64, eventType string, payload []byte) error {
	switch eventType {
	case EventCreated:
		if err := json.Unmarshal(payload, &o.Created); err != nil {
			return fmt.Errorf("decoding %s v%d: %w", eventType, version, err)
		}
		o.Status = StatusCreated
	case EventPaid:
		o.Status = StatusPaid
	case EventShipped:
		o.Status = StatusShipped
	case EventCancelled:
		o.Status = StatusCancelled
	default:
		return fmt.Errorf("unknown order event type %q", eventType)
	}
	o.Version = version
	return nil
}

// Event is one stored order event, as Fold reads it.
type Event struct {
	Version int64
	Type    string
	Payload []byte
}

// Fold returns the state after events (ascending versions), the same as
// Apply on each in turn. Only OrderCreated carries data; the lifecycle
// events change the status alone, so there is nothing to skip.
func Fold(events []Event) (Order, error) {
	var o Order
	for _, e := range events {
		if err := o.Apply(e.Version, e.Type, e.Payload); err != nil {
			return Order{}, err
		}
	}
	return o, nil
}

// Create decides the events of a new order from a validated command.
func Create(c Created) []domain.Event {
	return []domain.Event{{Type: EventCreated, SchemaVersion: 1, Payload: c}}
}

func (o *Order) transition(action string, allowed ...Status) error {
	if !o.Exists() {
		return domain.ErrNotFound
	}
	for _, s := range allowed {
		if o.Status == s {
			return nil
		}
	}
	return &domain.RuleError{
		Code:    "illegal_transition",
		Message: fmt.Sprintf("cannot %s an order that is %s", action, o.Status),
	}
}

// Pay marks a created order paid.
func (o *Order) Pay(reference string) ([]domain.Event, error) {
	if err := o.transition("pay", StatusCreated); err != nil {
		return nil, err
	}
	return []domain.Event{{Type: EventPaid, SchemaVersion: 1, Payload: Paid{PaymentReference: reference}}}, nil
}

// Ship ships a paid order.
func (o *Order) Ship(tracking string) ([]domain.Event, error) {
	if err := o.transition("ship", StatusPaid); err != nil {
		return nil, err
	}
	return []domain.Event{{Type: EventShipped, SchemaVersion: 1, Payload: Shipped{TrackingNumber: tracking}}}, nil
}

// Cancel cancels an order that is not shipped (nor already cancelled).
func (o *Order) Cancel(reason string) ([]domain.Event, error) {
	if err := o.transition("cancel", StatusCreated, StatusPaid); err != nil {
		return nil, err
	}
	return []domain.Event{{Type: EventCancelled, SchemaVersion: 1, Payload: Cancelled{Reason: reason}}}, nil
}
