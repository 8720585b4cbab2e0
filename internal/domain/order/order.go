// Package order is the order aggregate: create, then the lifecycle
// created → paid → shipped, with cancel allowed before shipping. It is
// pure: no SQL, no HTTP.
package order

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"cqrsflow/internal/domain"
)

// AggregateType is the aggregate_type of orders.
const AggregateType = "order"

// Event types, all at schema version 1 (SchemaVersion).
const (
	EventCreated   = "OrderCreated"
	EventPaid      = "OrderPaid"
	EventShipped   = "OrderShipped"
	EventCancelled = "OrderCancelled"
)

// SchemaVersion is the schema version of eventType's payload this package
// writes and folds; 0 for a type it does not know.
func SchemaVersion(eventType string) int {
	switch eventType {
	case EventCreated, EventPaid, EventShipped, EventCancelled:
		return 1
	}
	return 0
}

// StateVersion is the version of Order's JSON encoding as a snapshot and
// of the fold that computes it; raise it whenever either changes (see
// product.StateVersion).
const StateVersion = 1

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

// Order is the state folded from an order's events. Its JSON is the
// snapshot the event store keeps (StateVersion).
type Order struct {
	Version int64  `json:"version"`
	Status  Status `json:"status"`
	Created
}

// State encodes the order as a snapshot.
func (o Order) State() ([]byte, error) { return json.Marshal(o) }

// FromState decodes a snapshot State wrote with this StateVersion. A
// snapshot is derived data that a bug, an edit or an old encoding may
// have broken: unknown members, an unknown status or an order without a
// user are refused, so the caller folds the events instead.
func FromState(b []byte) (Order, error) {
	var o Order
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&o); err != nil {
		return Order{}, fmt.Errorf("decoding order state: %w", err)
	}
	if dec.More() {
		return Order{}, errors.New("decoding order state: data after the object")
	}
	switch o.Status {
	case StatusCreated, StatusPaid, StatusShipped, StatusCancelled:
	default:
		return Order{}, fmt.Errorf("order state with status %q", o.Status)
	}
	if o.Version < 1 || o.UserID == "" {
		return Order{}, fmt.Errorf("order state at v%d without a user", o.Version)
	}
	return o, nil
}

// Exists reports whether the order was created.
func (o *Order) Exists() bool { return o.Status != "" }

// Event is one stored order event, as Fold reads it (at SchemaVersion).
type Event struct {
	Version       int64
	Type          string
	SchemaVersion int
	Payload       []byte
}

// Apply folds one event into the state.
func (o *Order) Apply(e Event) error {
	want := SchemaVersion(e.Type)
	switch {
	case want == 0:
		return fmt.Errorf("unknown order event type %q", e.Type)
	case e.SchemaVersion != want:
		return fmt.Errorf("%s v%d: schema version %d, this fold reads %d (upcast it first)", e.Type, e.Version, e.SchemaVersion, want)
	}
	switch e.Type {
	case EventCreated:
		if err := json.Unmarshal(e.Payload, &o.Created); err != nil {
			return fmt.Errorf("decoding %s v%d: %w", e.Type, e.Version, err)
		}
		o.Status = StatusCreated
	case EventPaid:
		o.Status = StatusPaid
	case EventShipped:
		o.Status = StatusShipped
	case EventCancelled:
		o.Status = StatusCancelled
	}
	o.Version = e.Version
	return nil
}

// Fold returns the state after events (ascending versions), the same as
// Apply on each in turn.
func Fold(events []Event) (Order, error) { return FoldFrom(Order{}, events) }

// FoldFrom returns the state after events that follow o (a snapshot).
// Only OrderCreated carries data; the lifecycle events change the status
// alone, so there is nothing to skip.
func FoldFrom(o Order, events []Event) (Order, error) {
	for _, e := range events {
		if err := o.Apply(e); err != nil {
			return Order{}, err
		}
	}
	return o, nil
}

// Create decides the events of a new order from a validated command.
func Create(c Created) []domain.Event {
	return []domain.Event{{Type: EventCreated, SchemaVersion: SchemaVersion(EventCreated), Payload: c}}
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
	return []domain.Event{{Type: EventPaid, SchemaVersion: SchemaVersion(EventPaid), Payload: Paid{PaymentReference: reference}}}, nil
}

// Ship ships a paid order.
func (o *Order) Ship(tracking string) ([]domain.Event, error) {
	if err := o.transition("ship", StatusPaid); err != nil {
		return nil, err
	}
	return []domain.Event{{Type: EventShipped, SchemaVersion: SchemaVersion(EventShipped), Payload: Shipped{TrackingNumber: tracking}}}, nil
}

// Cancel cancels an order that is not shipped (nor already cancelled).
func (o *Order) Cancel(reason string) ([]domain.Event, error) {
	if err := o.transition("cancel", StatusCreated, StatusPaid); err != nil {
		return nil, err
	}
	return []domain.Event{{Type: EventCancelled, SchemaVersion: SchemaVersion(EventCancelled), Payload: Cancelled{Reason: reason}}}, nil
}
