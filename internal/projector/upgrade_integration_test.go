//go:build integration

package projector_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"strconv"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kgo"

	"cqrsflow/internal/envelope"
	"cqrsflow/internal/esindex"
	"cqrsflow/internal/projection"
	"cqrsflow/internal/projection/products"
	"cqrsflow/internal/projector"
	"cqrsflow/internal/testenv"
)

// v1Products is the products projection of the release before
// ProductCreated/ProductUpdated v2: it reads v1 only, and refuses a
// version it does not know (projection.Adapter.Versions) instead of
// guessing what the payload means.
type v1Products struct{ projector.Projection }

func (p v1Products) Apply(cur any, env *envelope.Envelope) (any, error) {
	if (env.EventType == products.Created || env.EventType == products.Updated) && env.SchemaVersion != 1 {
		return nil, projection.Unprojectable("%s at schema version %d: this projector reads version 1", env.EventType, env.SchemaVersion)
	}
	return p.Projection.Apply(cur, env)
}

func versionedRecord(topic string, e envelope.Envelope) *kgo.Record {
	b, _ := json.Marshal(e)
	return &kgo.Record{Topic: topic, Key: []byte(e.AggregateID), Value: b, Headers: []kgo.RecordHeader{
		{Key: envelope.HeaderEventType, Value: []byte(e.EventType)},
		{Key: envelope.HeaderSchemaVersion, Value: []byte(strconv.Itoa(e.SchemaVersion))},
		{Key: envelope.HeaderEventID, Value: []byte(e.EventID)},
		{Key: envelope.HeaderContentType, Value: []byte(envelope.ContentType)},
	}}
}

// The upgrade workflow of docs/extending.md ("changing an event"): the
// api writes v2 before the projector knows it; the running projector
// quarantines the aggregate at the v2 event (the other aggregates go on);
// the upgraded projector starts, `projector dlq redrive` applies the v2
// event, and the document equals the fold of the aggregate's events, v1
// upcast, the same as a history written at v2 throughout.
func TestV2QuarantinedByAnOldProjectorThenRedriven(t *testing.T) {
	es := testenv.Elasticsearch(t)
	topic := testenv.Topic(t, 1)
	adm := testenv.KafkaAdmin(t)
	testenv.CreateTopic(t, adm, envelope.DLQTopic(topic), 1)
	index := setupIndex(t, es)
	group := "g-" + topic
	prod := producer(t)
	old := startRunnerWith(t, v1Products{products.Projection}, es, topic, index, group)
	quarantined := func(r *running) float64 {
		return testutil.ToFloat64(r.metrics.Quarantined.WithLabelValues("products"))
	}

	id, other := uuid.NewString(), uuid.NewString()
	at := func(e envelope.Envelope, v int) envelope.Envelope { e.SchemaVersion = v; return e }
	mixed := []envelope.Envelope{
		productEvent(id, products.Created, 1, `{"name":"Lamp","description":"d","price":10,"stock":1}`),
		productEvent(id, products.Updated, 2, `{"name":"Lamp 2","description":"d","price":12,"stock":2}`),
		at(productEvent(id, products.Updated, 3, `{"name":"Lamp 3","description":"d","price":13,"currency":"USD","stock":3}`), 2),
	}
	allV2 := []envelope.Envelope{
		at(productEvent(other, products.Created, 1, `{"name":"Lamp","description":"d","price":10,"currency":"EUR","stock":1}`), 2),
		at(productEvent(other, products.Updated, 2, `{"name":"Lamp 2","description":"d","price":12,"currency":"EUR","stock":2}`), 2),
		at(productEvent(other, products.Updated, 3, `{"name":"Lamp 3","description":"d","price":13,"currency":"USD","stock":3}`), 2),
	}
	for _, e := range mixed {
		produce(t, prod, versionedRecord(topic, e))
	}
	waitFor(t, 30*time.Second, "the aggregate quarantined at its v2 event", func() bool {
		return quarantined(old) == 1 && snapshot(t, es, index, []string{id})[id].Version == 2
	})

	// The upgrade: the new projector replaces the old one, then the redrive.
	old.stop()
	upgraded := startRunner(t, es, topic, index, group)
	log := slog.New(slog.NewTextHandler(testWriter(t), nil))
	admin, err := projector.NewDLQAdmin(products.Projection, topic, []kgo.Opt{kgo.SeedBrokers(testenv.KafkaBrokers()...)}, es, index, log)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	rep, err := admin.Redrive(t.Context(), projector.DLQFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Aggregates) != 1 || !rep.Aggregates[0].Released || rep.Aggregates[0].ToVersion != 3 {
		t.Fatalf("redrive %+v, want %s released at v3", rep, id)
	}
	for _, e := range allV2 {
		produce(t, prod, versionedRecord(topic, e))
	}
	waitFor(t, 30*time.Second, "the all-v2 history projected, nothing quarantined", func() bool {
		return snapshot(t, es, index, []string{other})[other].Version == 3 && quarantined(upgraded) == 0
	})
	docs := snapshot(t, es, index, []string{id, other})
	got, want := productDoc(t, docs[id]), productDoc(t, docs[other])
	if got.Currency != "USD" || got.Version != 3 || got.Name != want.Name || got.Description != want.Description ||
		got.Price != want.Price || got.Currency != want.Currency || got.Stock != want.Stock || got.Deleted != want.Deleted {
		t.Errorf("mixed history %+v, all-v2 history %+v", got, want)
	}
	var fold any
	for _, e := range mixed {
		if fold, err = products.Projection.Apply(fold, &e); err != nil {
			t.Fatal(err)
		}
	}
	if got != *fold.(*products.Doc) {
		t.Errorf("document %+v, want the fold of its events %+v", got, fold)
	}
}

// A read model created before a field existed gets it at the next start
// (EnsureReadModel adds new mapping fields to the live index), so the
// strict mapping does not refuse the documents of the new version; a
// field whose type changed is refused (it takes a rebuild).
func TestEnsureReadModelAddsNewFields(t *testing.T) {
	es := testenv.Elasticsearch(t)
	prefix := testenv.IndexPrefix(t) + "-"
	current, err := products.Projection.Mapping()
	if err != nil {
		t.Fatal(err)
	}
	old := bytes.Replace(current, []byte(`"currency": {"type": "keyword"},`), nil, 1)
	if bytes.Equal(old, current) {
		t.Fatal("the products mapping has no currency field to remove")
	}
	index := esindex.IndexName(prefix, "products", 1)
	t.Cleanup(func() { _ = esindex.DeleteIndex(context.Background(), es, index) })
	if err := esindex.EnsureIndex(t.Context(), es, index, old); err != nil {
		t.Fatal(err)
	}
	if _, err := esindex.EnsureAlias(t.Context(), es, esindex.AliasName(prefix, "products"), index); err != nil {
		t.Fatal(err)
	}
	hasCurrency := func() bool {
		res, err := es.Indices.GetMapping(es.Indices.GetMapping.WithIndex(index))
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return bytes.Contains(b, []byte(`"currency":{"type":"keyword"}`))
	}
	if hasCurrency() {
		t.Fatal("the old index already has currency")
	}
	if _, err := projector.EnsureReadModel(t.Context(), es, prefix, products.Projection); err != nil {
		t.Fatal(err)
	}
	if !hasCurrency() {
		t.Error("EnsureReadModel did not add currency to the existing index")
	}
	changed := intStockProducts{products.Projection} // stock: long → integer
	if _, err := projector.EnsureReadModel(t.Context(), es, prefix, changed); !errors.Is(err, esindex.ErrRejected) {
		t.Errorf("a changed field type: %v, want ErrRejected", err)
	}
}
