// Package catalog is the one place where cqrsflow's aggregate types and
// read models are registered. Every binary reads it: the api mounts each
// entry's command and read routes, the projector runs each entry's
// projection, and the relay creates each entry's topic by default
// (AGGREGATE_TYPES). Adding an aggregate type or a projection is one entry
// here plus the code the entry points at; docs/extending.md walks through
// it.
package catalog

import (
	"fmt"
	"slices"
	"strings"

	"cqrsflow/internal/httpapi"
	"cqrsflow/internal/projection/orders"
	"cqrsflow/internal/projection/products"
	"cqrsflow/internal/projector"
	"cqrsflow/internal/query"
)

// Entry is one aggregate type and what is built from its events.
type Entry struct {
	// AggregateType is the aggregate type of the events (the topic
	// <prefix>.<type>.events).
	AggregateType string
	// Commands registers its command routes (nil: no commands through the
	// api, e.g. events written by another service).
	Commands httpapi.Module
	// Projection builds its read model (nil: none).
	Projection projector.Projection
	// Reads registers the routes of its read model on r. Nil serves the
	// read model as stored (query.RegisterReadModel: get by id with
	// read-your-writes, paged list) to callers with the read scope.
	Reads func(r httpapi.Routes, q *query.Handler) error
}

// Entries are the registered aggregate types, in registration order.
var Entries = []Entry{
	{
		AggregateType: "product",
		Commands:      httpapi.ProductCommands,
		Projection:    products.Projection,
		Reads: func(r httpapi.Routes, q *query.Handler) error {
			query.RegisterProducts(r.CatalogueReads, q) // PUBLIC_PRODUCT_READS may open these
			return nil
		},
	},
	{
		AggregateType: "order",
		Commands:      httpapi.OrderCommands,
		Projection:    orders.Projection,
		Reads: func(r httpapi.Routes, q *query.Handler) error {
			query.RegisterOrders(r.Reads, q) // scoped to the caller's users
			return nil
		},
	},
}

// AggregateTypes are the registered aggregate types, each once (two
// entries may share a type: a second read model of the same events).
func AggregateTypes() []string {
	var out []string
	for _, e := range Entries {
		if !slices.Contains(out, e.AggregateType) {
			out = append(out, e.AggregateType)
		}
	}
	return out
}

// Projections are the registered projections.
func Projections() []projector.Projection {
	var out []projector.Projection
	for _, e := range Entries {
		if e.Projection != nil {
			out = append(out, e.Projection)
		}
	}
	return out
}

// ProjectionNames are the names of the registered projections, sorted.
func ProjectionNames() []string {
	var out []string
	for _, p := range Projections() {
		out = append(out, p.Name())
	}
	slices.Sort(out)
	return out
}

// Projection returns the registered projection called name.
func Projection(name string) (projector.Projection, error) {
	for _, p := range Projections() {
		if p.Name() == name {
			return p, nil
		}
	}
	return nil, fmt.Errorf("%q is not one of %s", name, strings.Join(ProjectionNames(), ", "))
}

// Modules are the api's route modules of every entry: its commands and
// the routes of its read model.
func Modules(q *query.Handler) []httpapi.Module {
	var out []httpapi.Module
	for _, e := range Entries {
		if e.Commands != nil {
			out = append(out, e.Commands)
		}
		if e.Projection == nil {
			continue
		}
		if e.Reads != nil {
			out = append(out, func(r httpapi.Routes) error { return e.Reads(r, q) })
			continue
		}
		m := query.ReadModel{Name: e.Projection.Name(), Kind: e.AggregateType}
		out = append(out, func(r httpapi.Routes) error { return query.RegisterReadModel(r.Reads, q, m) })
	}
	return out
}
