package command

import (
	"context"
	"errors"
	"strings"
	"testing"

	"cqrsflow/internal/domain"
	"cqrsflow/internal/domain/product"
	"cqrsflow/internal/eventschema"
	"cqrsflow/internal/eventstore"
)

var validProduct = product.Fields{Name: "Lamp", Description: "bright", Price: 1999, Stock: 3}

func TestCreateProduct(t *testing.T) {
	var appended []eventstore.NewEvent
	repo := storeLike(nil, &appended)
	f := newFixture(t, repo)
	r := req
	r.Status = 201
	res, err := f.h.CreateProduct.Handle(context.Background(), CreateProduct{Fields: validProduct, Request: r})
	if err != nil {
		t.Fatal(err)
	}
	cmd := repo.last(t)
	if cmd.AggregateType != "product" || !isUUID(cmd.AggregateID) || cmd.ExpectedVersion != eventstore.NoAggregate {
		t.Errorf("command %+v", cmd)
	}
	if res.ID != cmd.AggregateID || res.Version != 1 || res.Replayed || res.Status != 201 ||
		string(res.Body) != `{"id":"`+cmd.AggregateID+`","version":1}` {
		t.Errorf("result %+v %s", res, res.Body)
	}
	if len(appended) != 1 || appended[0].Type != "ProductCreated" || appended[0].SchemaVersion != 2 ||
		string(appended[0].Payload) != `{"name":"Lamp","description":"bright","price":19.99,"currency":"EUR","stock":3}` {
		t.Errorf("appended %+v", appended)
	}
	if n := f.counter(t, "cqrsflow_events_appended_total", "product", "ProductCreated"); n != 1 {
		t.Errorf("appended metric %v", n)
	}
	// Every create gets a new id.
	res2, err := f.h.CreateProduct.Handle(context.Background(), CreateProduct{Fields: validProduct, Request: r})
	if err != nil || res2.ID == res.ID {
		t.Errorf("second create: %+v %v", res2, err)
	}
}

func TestUpdateProduct(t *testing.T) {
	created := history(t, product.Create(validProduct)...)
	for _, tc := range []struct {
		expected, passed int64
	}{{0, eventstore.AnyVersion}, {1, 1}} {
		var appended []eventstore.NewEvent
		repo := storeLike(created, &appended)
		f := newFixture(t, repo)
		upd := product.Fields{Name: "Lamp 2", Price: 2500}
		res, err := f.h.UpdateProduct.Handle(context.Background(),
			UpdateProduct{ID: "p1", ExpectedVersion: tc.expected, Fields: upd, Request: req})
		if err != nil {
			t.Fatal(err)
		}
		cmd := repo.last(t)
		if cmd.AggregateType != "product" || cmd.AggregateID != "p1" || cmd.ExpectedVersion != tc.passed {
			t.Errorf("expected %d: command %+v", tc.expected, cmd)
		}
		if res.ID != "p1" || res.Version != 2 || res.Status != 200 || string(res.Body) != `{"id":"p1","version":2}` {
			t.Errorf("result %+v %s", res, res.Body)
		}
		if len(appended) != 1 || appended[0].Type != "ProductUpdated" || appended[0].SchemaVersion != 2 ||
			string(appended[0].Payload) != `{"name":"Lamp 2","description":"","price":25,"currency":"EUR","stock":0}` {
			t.Errorf("appended %+v", appended)
		}
	}
}

func TestUpdateProductRefusals(t *testing.T) {
	created := product.Create(validProduct)
	deleted := append(created, domain.Event{Type: product.EventDeleted, SchemaVersion: 1, Payload: product.Deleted{}})
	ctx := context.Background()

	f := newFixture(t, storeLike(nil, nil))
	if _, err := f.h.UpdateProduct.Handle(ctx, UpdateProduct{ID: "p", Fields: validProduct, Request: req}); !errors.Is(err, domain.ErrNotFound) {
		t.Errorf("update of an unknown product: %v", err)
	}
	if _, err := f.h.DeleteProduct.Handle(ctx, DeleteProduct{ID: "p", Request: req}); !errors.Is(err, domain.ErrNotFound) {
		t.Errorf("delete of an unknown product: %v", err)
	}

	f = newFixture(t, storeLike(history(t, deleted...), nil))
	var re *domain.RuleError
	if _, err := f.h.UpdateProduct.Handle(ctx, UpdateProduct{ID: "p", Fields: validProduct, Request: req}); !errors.As(err, &re) || re.Code != "product_deleted" {
		t.Errorf("update of a deleted product: %v", err)
	}
	if _, err := f.h.DeleteProduct.Handle(ctx, DeleteProduct{ID: "p", Request: req}); !errors.As(err, &re) || re.Code != "product_deleted" {
		t.Errorf("delete twice: %v", err)
	}

	// A stale expected version is the store's conflict, unchanged.
	f = newFixture(t, storeLike(history(t, created...), nil))
	_, err := f.h.UpdateProduct.Handle(ctx, UpdateProduct{ID: "p", ExpectedVersion: 3, Fields: validProduct, Request: req})
	var ce *eventstore.ConflictError
	if !errors.As(err, &ce) || ce.Current != 1 || ce.Expected != 3 {
		t.Errorf("stale update: %v", err)
	}
	if n := f.counter(t, "cqrsflow_command_conflicts_total", "product"); n != 1 {
		t.Errorf("conflict metric %v", n)
	}
	if n := f.counter(t, "cqrsflow_events_appended_total", "product", "ProductUpdated"); n != 0 {
		t.Errorf("appended metric %v after refusals", n)
	}
}

func TestDeleteProduct(t *testing.T) {
	var appended []eventstore.NewEvent
	repo := storeLike(history(t, product.Create(validProduct)...), &appended)
	f := newFixture(t, repo)
	res, err := f.h.DeleteProduct.Handle(context.Background(), DeleteProduct{ID: "p1", ExpectedVersion: 1, Reason: "gone", Request: req})
	if err != nil {
		t.Fatal(err)
	}
	if res.Version != 2 || repo.last(t).ExpectedVersion != 1 {
		t.Errorf("result %+v, command %+v", res, repo.last(t))
	}
	if len(appended) != 1 || appended[0].Type != "ProductDeleted" || string(appended[0].Payload) != `{"reason":"gone"}` {
		t.Errorf("appended %+v", appended)
	}
}

// What the schemas reject is never appended, whatever the domain let
// through: the command fails with the violations.
func TestProductSchemaFailure(t *testing.T) {
	ctx := context.Background()
	created := history(t, product.Create(validProduct)...)
	for _, tc := range []struct {
		name string
		hist []eventstore.Event
		run  func(h *Handlers) error
	}{
		{"empty name", nil, func(h *Handlers) error {
			_, err := h.CreateProduct.Handle(ctx, CreateProduct{Fields: product.Fields{Price: 1}, Request: req})
			return err
		}},
		{"negative stock", created, func(h *Handlers) error {
			_, err := h.UpdateProduct.Handle(ctx, UpdateProduct{ID: "p", Fields: product.Fields{Name: "a", Stock: -1}, Request: req})
			return err
		}},
		{"long reason", created, func(h *Handlers) error {
			_, err := h.DeleteProduct.Handle(ctx, DeleteProduct{ID: "p", Reason: strings.Repeat("x", 1001), Request: req})
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

// BenchmarkUpdateProduct is the command layer's CPU per update: fold a
// one-event history, decide, encode, validate against the schema.
func BenchmarkUpdateProduct(b *testing.B) {
	created := []eventstore.Event{{Version: 1, Type: "ProductCreated", SchemaVersion: 1,
		Payload: []byte(`{"name":"a","description":"","price":1,"stock":1}`)}}
	f := newFixture(b, storeLike(created, nil))
	cmd := UpdateProduct{ID: "p1", Fields: product.Fields{Name: "bench product",
		Description: "a product updated by the benchmark", Price: 1234, Stock: 5}, Request: req}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := f.h.UpdateProduct.Handle(context.Background(), cmd); err != nil {
			b.Fatal(err)
		}
	}
}
