// Package products is the products read-model projection: product events →
// one searchable document per product (schemas/elasticsearch/products.json).
// Apply reads ProductCreated/ProductUpdated v2; Projection upcasts v1
// (internal/upcast) and quarantines versions it does not know.
package products

import (
	"cqrsflow/internal/envelope"
	"cqrsflow/internal/projection"
	"cqrsflow/internal/upcast"
)

// Event types of the product aggregate.
const (
	Created = "ProductCreated"
	Updated = "ProductUpdated"
	Deleted = "ProductDeleted"
)

// Doc is a product document.
type Doc struct {
	projection.Base
	Name        string  `json:"name"`
	Description string  `json:"description"`
	Price       float64 `json:"price"`
	Currency    string  `json:"currency"` // ISO 4217
	Stock       int64   `json:"stock"`
}

// state is the payload of ProductCreated and ProductUpdated v2 (v1 is
// upcast before Apply: Projection.Upcast).
type state struct {
	Name        *string  `json:"name"`
	Description *string  `json:"description"`
	Price       *float64 `json:"price"`
	Currency    *string  `json:"currency"`
	Stock       *int64   `json:"stock"`
}

func decodeState(env *envelope.Envelope) (state, error) {
	var s state
	if err := projection.DecodePayload(env, &s); err != nil {
		return s, err
	}
	var missing []string
	if s.Name == nil {
		missing = append(missing, "name")
	}
	if s.Description == nil {
		empty := ""
		s.Description = &empty
	}
	if s.Price == nil {
		missing = append(missing, "price")
	}
	if s.Stock == nil {
		missing = append(missing, "stock")
	}
	if s.Currency == nil || *s.Currency == "" {
		missing = append(missing, "currency")
	}
	if len(missing) > 0 {
		return s, projection.Unprojectable("%s payload misses %v", env.EventType, missing)
	}
	return s, nil
}

// Apply folds env onto cur (nil: no document yet) and returns the new
// document. It does not check versions (the runtime does); it checks that
// the event can start or continue the document. A deleted product stays
// deleted: later events only advance its version.
func Apply(cur *Doc, env *envelope.Envelope) (*Doc, error) {
	if env.AggregateType != "product" {
		return nil, projection.Unprojectable("aggregate_type %q is not product", env.AggregateType)
	}
	switch env.EventType {
	case Created, Updated, Deleted:
	default:
		return nil, projection.Unprojectable("unknown product event type %q", env.EventType)
	}
	if cur == nil {
		if env.EventType != Created {
			return nil, projection.Unprojectable("%s cannot start a product (no document)", env.EventType)
		}
		s, err := decodeState(env)
		if err != nil {
			return nil, err
		}
		return &Doc{Base: projection.Start(env), Name: *s.Name, Description: *s.Description, Price: *s.Price,
			Currency: *s.Currency, Stock: *s.Stock}, nil
	}
	next := *cur
	if cur.Deleted {
		// Never resurrect: keep the deleted state, follow the version.
		next.Advance(env)
		return &next, nil
	}
	switch env.EventType {
	case Created:
		return nil, projection.Unprojectable("ProductCreated for existing product %s", cur.ID)
	case Updated:
		s, err := decodeState(env)
		if err != nil {
			return nil, err
		}
		next.Name, next.Description, next.Price, next.Currency, next.Stock = *s.Name, *s.Description, *s.Price, *s.Currency, *s.Stock
	case Deleted:
		var p struct {
			Reason string `json:"reason"`
		}
		if err := projection.DecodePayload(env, &p); err != nil {
			return nil, err
		}
		next.Deleted = true
	}
	next.Advance(env)
	return &next, nil
}

// Projection is the products projection for the projector runtime.
var Projection = projection.Adapter[Doc]{ProjectionName: "products", Aggregate: "product",
	MappingFile: "elasticsearch/products.json", Fold: Apply,
	Upcast: upcast.Events(), Versions: Versions}

// Versions are the schema versions Apply reads.
var Versions = map[string]int{Created: 2, Updated: 2, Deleted: 1}
