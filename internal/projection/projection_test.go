package projection_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"cqrsflow/internal/envelope"
	"cqrsflow/internal/projection"
)

type doc struct {
	projection.Base
	N int `json:"n"`
}

var adapter = projection.Adapter[doc]{ProjectionName: "things", Aggregate: "thing",
	MappingFile: "elasticsearch/products.json",
	Fold: func(cur *doc, env *envelope.Envelope) (*doc, error) {
		next := doc{Base: projection.Start(env)}
		if cur != nil {
			next = *cur
			next.Advance(env)
		}
		next.N++
		return &next, nil
	}}

func TestAdapter(t *testing.T) {
	if adapter.Name() != "things" || adapter.AggregateType() != "thing" {
		t.Fatalf("name %q aggregate %q", adapter.Name(), adapter.AggregateType())
	}
	if m, err := adapter.Mapping(); err != nil || !json.Valid(m) {
		t.Fatalf("mapping: %v", err)
	}
	env := &envelope.Envelope{EventID: "e1", AggregateID: "a1", Version: 1, OccurredAt: time.Unix(1, 0)}
	got, err := adapter.Apply(nil, env)
	if err != nil {
		t.Fatal(err)
	}
	d := got.(*doc)
	if d.N != 1 || d.ID != "a1" || d.Version != 1 {
		t.Fatalf("first fold: %+v", d)
	}
	raw, _ := json.Marshal(d)
	back, err := adapter.Decode(raw)
	if err != nil {
		t.Fatal(err)
	}
	env2 := &envelope.Envelope{EventID: "e2", AggregateID: "a1", Version: 2, OccurredAt: time.Unix(2, 0)}
	got, err = adapter.Apply(back, env2)
	if err != nil || got.(*doc).N != 2 || got.(*doc).Version != 2 {
		t.Fatalf("second fold: %+v, %v", got, err)
	}
}

func TestAdapterErrors(t *testing.T) {
	if _, err := adapter.Decode([]byte(`{"n":"x"}`)); err == nil || !strings.Contains(err.Error(), "things") {
		t.Fatalf("decode of a bad document: err %v", err)
	}
	if _, err := adapter.Apply(struct{}{}, &envelope.Envelope{}); err == nil || !strings.Contains(err.Error(), "document of type") {
		t.Fatalf("apply to a foreign document: err %v", err)
	}
	bad := adapter
	bad.MappingFile = "elasticsearch/nope.json"
	if _, err := bad.Mapping(); err == nil {
		t.Fatal("missing mapping file: want an error")
	}
}
