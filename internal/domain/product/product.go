// Package product is the product aggregate: create, update (full
// replacement) and delete, with its invariants. It is pure: events in,
// decisions out; no SQL, no HTTP.
package product

import (
	"encoding/json"
	"fmt"

	"cqrsflow/internal/domain"
)

// AggregateType is the aggregate_type of products.
const AggregateType = "product"

// Event types (schema version 1).
const (
	EventCreated = "ProductCreated"
	EventUpdated = "ProductUpdated"
	EventDeleted = "ProductDeleted"
)

// Limits of the product fields.
const (
	MaxName        = 200
	MaxDescription = 5000
	MaxReason      = 1000
)

// Fields is the full state a create or an update carries; it is also the
// payload of ProductCreated and ProductUpdated v1.
type Fields struct {
	Name        string       `json:"name"`
	Description string       `json:"description"`
	Price       domain.Money `json:"price"`
	Stock       int64        `json:"stock"`
}

// Deleted is the payload of ProductDeleted v1.
type Deleted struct {
	Reason string `json:"reason,omitempty"`
}

// Input is a create/update command as the client sent it: strings, and
// numbers as their JSON literals (nil/"" when absent).
type Input struct {
	Name        *string
	Description *string
	Price       string
	Stock       string
}

// Validate checks every field rule at once and returns the fields, or a
// *domain.ValidationError naming each invalid field.
func Validate(in Input) (Fields, error) {
	var errs domain.Errs
	var f Fields
	if in.Name == nil {
		errs.Add("name", "is required")
	} else {
		domain.String(&errs, "name", *in.Name, 1, MaxName, true)
		f.Name = *in.Name
	}
	if in.Description != nil {
		domain.String(&errs, "description", *in.Description, 0, MaxDescription, false)
		f.Description = *in.Description
	}
	if p, reason := domain.ParseMoney(in.Price); reason != "" {
		errs.Add("price", reason)
	} else {
		f.Price = p
	}
	if s, reason := domain.ParseInt(in.Stock, 0); reason != "" {
		errs.Add("stock", reason)
	} else {
		f.Stock = s
	}
	return f, errs.Err()
}

// ValidateReason checks the optional reason of a delete.
func ValidateReason(reason string) error {
	var errs domain.Errs
	domain.String(&errs, "reason", reason, 0, MaxReason, false)
	return errs.Err()
}

// Product is the state folded from a product's events.
type Product struct {
	Version int64
	Exists  bool
	Deleted bool
	Fields
}

// Apply folds one event into the state.
func (p *Product) Apply(version int64, eventType string, payload []byte) error {
	switch eventType {
	case EventCreated, EventUpdated:
		var f Fields
		if err := json.Unmarshal(payload, &f); err != nil {
			return fmt.Errorf("decoding %s v%d: %w", eventType, version, err)
		}
		p.Fields = f
		p.Exists = true
	case EventDeleted:
		p.Deleted = true
	default:
		return fmt.Errorf("unknown product event type %q", eventType)
	}
	p.Version = version
	return nil
}

// Event is one stored product event, as Fold reads it.
type Event struct {
	Version int64
	Type    string
	Payload []byte
}

// Fold returns the state after events (ascending versions), the same as
// Apply on each in turn. Created and Updated carry the whole state (PUT
// semantics), so only the last of them is decoded: an update costs the
// same whatever the length of the product's history.
func Fold(events []Event) (Product, error) {
	var p Product
	last := -1
	for i, e := range events {
		switch e.Type {
		case EventCreated, EventUpdated:
			last = i
		case EventDeleted:
		default:
			return Product{}, fmt.Errorf("unknown product event type %q", e.Type)
		}
	}
	for i, e := range events {
		if i != last && (e.Type == EventCreated || e.Type == EventUpdated) {
			p.Exists, p.Version = true, e.Version // replaced by a later state
			continue
		}
		if err := p.Apply(e.Version, e.Type, e.Payload); err != nil {
			return Product{}, err
		}
	}
	return p, nil
}

// Create decides the events of a new product from validated fields.
func Create(f Fields) []domain.Event {
	return []domain.Event{{Type: EventCreated, SchemaVersion: 1, Payload: f}}
}

func (p *Product) live() error {
	if !p.Exists {
		return domain.ErrNotFound
	}
	if p.Deleted {
		return &domain.RuleError{Code: "product_deleted", Message: "product is deleted"}
	}
	return nil
}

// Update replaces the product's state (PUT semantics).
func (p *Product) Update(f Fields) ([]domain.Event, error) {
	if err := p.live(); err != nil {
		return nil, err
	}
	return []domain.Event{{Type: EventUpdated, SchemaVersion: 1, Payload: f}}, nil
}

// Delete soft-deletes the product; deleting twice breaks a rule.
func (p *Product) Delete(reason string) ([]domain.Event, error) {
	if err := p.live(); err != nil {
		return nil, err
	}
	return []domain.Event{{Type: EventDeleted, SchemaVersion: 1, Payload: Deleted{Reason: reason}}}, nil
}
