//go:build integration

package projector_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/elastic/go-elasticsearch/v8"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kgo"

	"cqrsflow/internal/envelope"
	"cqrsflow/internal/esindex"
	"cqrsflow/internal/projection/products"
	"cqrsflow/internal/projector"
	"cqrsflow/internal/testenv"
)

func productEvent(id, typ string, version int64, payload string) envelope.Envelope {
	now := time.Now().UTC()
	return envelope.Envelope{
		EventID: uuid.NewString(), EventType: typ, SchemaVersion: 1, AggregateType: "product", AggregateID: id,
		Version: version, OccurredAt: now, RecordedAt: now, GlobalPosition: version, Payload: json.RawMessage(payload),
	}
}

func record(topic string, e envelope.Envelope) *kgo.Record {
	b, _ := json.Marshal(e)
	return &kgo.Record{Topic: topic, Key: []byte(e.AggregateID), Value: b, Headers: []kgo.RecordHeader{
		{Key: envelope.HeaderEventType, Value: []byte(e.EventType)},
		{Key: envelope.HeaderSchemaVersion, Value: []byte("1")},
		{Key: envelope.HeaderEventID, Value: []byte(e.EventID)},
		{Key: envelope.HeaderContentType, Value: []byte(envelope.ContentType)},
	}}
}

func producer(t *testing.T) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(testenv.KafkaBrokers()...), kgo.RequiredAcks(kgo.AllISRAcks()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

func produce(t *testing.T, cl *kgo.Client, recs ...*kgo.Record) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("producing: %v", err)
	}
}

type running struct {
	metrics *projector.Metrics
	stop    func()
}

func startRunner(t *testing.T, es *elasticsearch.Client, topic, index, group string, opts ...func(*projector.Config)) *running {
	t.Helper()
	return startRunnerWith(t, products.Projection, es, topic, index, group, opts...)
}

// startRunnerWith runs proj's Runner until the test ends; the quarantine
// topic it creates is deleted afterwards.
func startRunnerWith(t *testing.T, proj projector.Projection, es *elasticsearch.Client, topic, index, group string, opts ...func(*projector.Config)) *running {
	t.Helper()
	t.Cleanup(func() { deleteTopic(projector.QuarantineTopic(topic)) })
	reg := prometheus.NewRegistry()
	m := projector.NewMetrics(reg)
	cfg := projector.Config{
		Brokers: testenv.KafkaBrokers(), Group: group, Topic: topic, Index: index,
		BatchMaxRecords: 500, FlushInterval: 10 * time.Millisecond, LagInterval: 200 * time.Millisecond,
		BackoffMin: 50 * time.Millisecond, BackoffMax: time.Second, DLQPartitions: 1,
	}
	for _, o := range opts {
		o(&cfg)
	}
	r, err := projector.New(cfg, proj, es, m, slog.New(slog.NewTextHandler(testWriter(t), nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("runner: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("runner did not stop within 30s")
		}
	}
	t.Cleanup(stop)
	t.Cleanup(func() { deleteGroup(group) })
	return &running{metrics: m, stop: stop}
}

func deleteGroup(group string) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(testenv.KafkaBrokers()...))
	if err != nil {
		return
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, _ = kadmClient(cl).DeleteGroups(ctx, group)
}

func deleteTopic(topic string) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(testenv.KafkaBrokers()...))
	if err != nil {
		return
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, _ = kadmClient(cl).DeleteTopics(ctx, topic)
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

type stored struct {
	Version int64
	Source  string
}

func snapshot(t *testing.T, es *elasticsearch.Client, index string, ids []string) map[string]stored {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	hits, err := esindex.MGet(ctx, es, index, ids)
	if err != nil {
		t.Fatalf("mget: %v", err)
	}
	out := map[string]stored{}
	for id, h := range hits {
		out[id] = stored{Version: h.Version, Source: string(h.Source)}
	}
	return out
}

func productDoc(t *testing.T, s stored) products.Doc {
	t.Helper()
	var d products.Doc
	if err := json.Unmarshal([]byte(s.Source), &d); err != nil {
		t.Fatalf("decoding %s: %v", s.Source, err)
	}
	return d
}

func setupIndex(t *testing.T, es *elasticsearch.Client) string {
	t.Helper()
	prefix := testenv.IndexPrefix(t) + "-"
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	alias, err := projector.EnsureReadModel(ctx, es, prefix, products.Projection)
	if err != nil {
		t.Fatalf("creating read model: %v", err)
	}
	return alias
}

// Events for several products arrive with duplicates, poison records and a
// version gap. Applied documents carry the right fields and version; the
// poison records land in the DLQ with reason headers; the gapped product is
// parked (counted) while the others flow, and is applied once the missing
// event arrives. Delivering every event again, out of order, leaves the
// index identical.
func TestProjectorApplyPoisonGapIdempotency(t *testing.T) {
	es := testenv.Elasticsearch(t)
	topic := testenv.Topic(t, 3)
	adm := testenv.KafkaAdmin(t)
	testenv.CreateTopic(t, adm, envelope.DLQTopic(topic), 1)
	index := setupIndex(t, es)
	group := "g-" + topic
	prod := producer(t)

	var all []envelope.Envelope
	ids := []string{}
	for i := range 5 {
		id := uuid.NewString()
		ids = append(ids, id)
		all = append(all,
			productEvent(id, products.Created, 1, fmt.Sprintf(`{"name":"Lamp %d","description":"warm light number %d","price":%d.5,"stock":%d}`, i, i, i, i)),
			productEvent(id, products.Updated, 2, fmt.Sprintf(`{"name":"Lamp %d v2","description":"brighter light %d","price":%d.25,"stock":%d}`, i, i, 10+i, 100+i)),
		)
	}
	all = append(all, productEvent(ids[4], products.Deleted, 3, `{}`))
	// A duplicate of an applied event in the first delivery.
	recs := []*kgo.Record{}
	for _, e := range all {
		recs = append(recs, record(topic, e))
	}
	recs = append(recs, record(topic, all[0]))
	// Poison: not JSON, invalid envelope, unknown event type.
	recs = append(recs,
		&kgo.Record{Topic: topic, Key: []byte("junk"), Value: []byte("{not json")},
		&kgo.Record{Topic: topic, Key: []byte("bad"), Value: []byte(`{"event_id":"x","event_type":"ProductCreated","schema_version":1,"aggregate_type":"product","aggregate_id":"bad","version":0,"payload":{}}`)},
		record(topic, productEvent(uuid.NewString(), "ProductExploded", 1, `{}`)),
	)
	// Gap: v1 then v3 of product gap.
	gapID := uuid.NewString()
	gap1 := productEvent(gapID, products.Created, 1, `{"name":"Gap","description":"d","price":1,"stock":1}`)
	gap2 := productEvent(gapID, products.Updated, 2, `{"name":"Gap v2","description":"d","price":2,"stock":2}`)
	gap3 := productEvent(gapID, products.Updated, 3, `{"name":"Gap v3","description":"d","price":3,"stock":3}`)
	recs = append(recs, record(topic, gap1), record(topic, gap3))
	produce(t, prod, recs...)

	// This test watches a gap stay parked across a restart; on a slow
	// machine that can take longer than PARK_TIMEOUT, after which the gap
	// would be quarantined (TestProcessorParkTimeout covers that).
	longPark := func(c *projector.Config) { c.ParkTimeout = time.Hour }
	run := startRunner(t, es, topic, index, group, longPark)
	m := run.metrics
	events := func(outcome string) float64 { return testutil.ToFloat64(m.Events.WithLabelValues("products", outcome)) }
	waitFor(t, 30*time.Second, "events applied and parked", func() bool {
		return events(projector.OutcomeApplied) >= 12 && events(projector.OutcomeParked) >= 1 && events(projector.OutcomeDLQ) >= 3
	})

	snap := snapshot(t, es, index, append(slices.Clone(ids), gapID))
	for i, id := range ids {
		s, ok := snap[id]
		if !ok {
			t.Fatalf("product %d missing", i)
		}
		d := productDoc(t, s)
		wantVersion := int64(2)
		if i == 4 {
			wantVersion = 3
		}
		if s.Version != wantVersion || d.Version != wantVersion || d.Name != fmt.Sprintf("Lamp %d v2", i) ||
			d.Price != float64(10+i)+0.25 || d.Stock != int64(100+i) || d.Deleted != (i == 4) {
			t.Errorf("product %d = %+v (_version %d), want v%d with the update's fields", i, d, s.Version, wantVersion)
		}
	}
	if d := productDoc(t, snap[gapID]); d.Version != 1 || d.Name != "Gap" {
		t.Errorf("gapped product = %+v, want v1 only while v3 is parked", d)
	}
	if got := testutil.ToFloat64(m.VersionGaps); got != 1 {
		t.Errorf("version gaps = %v, want 1", got)
	}
	if got := testutil.ToFloat64(m.Parked.WithLabelValues("products")); got != 1 {
		t.Errorf("parked gauge = %v, want 1", got)
	}
	if got := events(projector.OutcomeDuplicate); got != 1 {
		t.Errorf("duplicates = %v, want 1", got)
	}
	// While a gap is open, the consumer lag of its partition does not drop
	// to 0 (the commit waits at the parked record) and sync lag is > 0.
	waitFor(t, 10*time.Second, "sync lag > 0 while parked", func() bool {
		return testutil.ToFloat64(m.SyncLag.WithLabelValues("products")) > 0
	})

	// DLQ: three records with reasons and source coordinates.
	dlq := consumeAll(t, envelope.DLQTopic(topic), 3)
	for _, r := range dlq {
		h := headers(r)
		if h[projector.HeaderDLQReason] == "" || h[projector.HeaderDLQSourceTopic] != topic || h[projector.HeaderDLQProjection] != "products" ||
			h[projector.HeaderDLQSourceOffset] == "" || h[projector.HeaderDLQSourcePartition] == "" {
			t.Errorf("DLQ record %q headers %v, want reason and source coordinates", r.Value, h)
		}
	}
	reasons := []string{}
	for _, r := range dlq {
		reasons = append(reasons, headers(r)[projector.HeaderDLQReason])
	}
	t.Logf("DLQ reasons: %q", reasons)

	// Parked records survive a restart: the commit stopped at the parked
	// record, so a new worker re-reads it and parks it again.
	run.stop()
	lags, err := projector.Lag(t.Context(), testenv.KafkaAdmin(t), group, topic)
	if err != nil {
		t.Fatal(err)
	}
	var behind int64
	for _, l := range lags {
		behind += l
	}
	if behind < 1 {
		t.Fatalf("committed lag %d after stopping with a parked record, want >= 1 (commit must not pass it)", behind)
	}
	run = startRunner(t, es, topic, index, group, longPark)
	m = run.metrics
	waitFor(t, 30*time.Second, "gap re-detected after restart", func() bool {
		return testutil.ToFloat64(m.Parked.WithLabelValues("products")) == 1
	})
	if got := events(projector.OutcomeApplied); got != 0 {
		t.Errorf("restart re-applied %v events, want 0 (all re-read ones are no-ops)", got)
	}

	// The missing event arrives: v2 and the parked v3 are applied.
	produce(t, prod, record(topic, gap2))
	waitFor(t, 30*time.Second, "gap closed", func() bool {
		s := snapshot(t, es, index, []string{gapID})[gapID]
		return s.Version == 3
	})
	if d := productDoc(t, snapshot(t, es, index, []string{gapID})[gapID]); d.Name != "Gap v3" || d.Price != 3 {
		t.Errorf("after the gap closed: %+v, want Gap v3", d)
	}
	lagSum := func() float64 {
		var sum float64
		for p := range 3 {
			sum += testutil.ToFloat64(m.ConsumerLag.WithLabelValues("products", topic, fmt.Sprint(p)))
		}
		return sum
	}
	waitFor(t, 10*time.Second, "parked gauge 0, consumer lag 0 and sync lag 0", func() bool {
		return testutil.ToFloat64(m.Parked.WithLabelValues("products")) == 0 && lagSum() == 0 &&
			testutil.ToFloat64(m.SyncLag.WithLabelValues("products")) == 0
	})

	// Idempotency: everything again, reversed, plus duplicates → identical index.
	before := snapshot(t, es, index, append(slices.Clone(ids), gapID))
	applied := events(projector.OutcomeApplied)
	noops := events(projector.OutcomeDuplicate) + events(projector.OutcomeStale)
	again := append(slices.Clone(all), gap1, gap2, gap3)
	slices.Reverse(again)
	var recs2 []*kgo.Record
	for _, e := range again {
		recs2 = append(recs2, record(topic, e), record(topic, e))
	}
	produce(t, prod, recs2...)
	waitFor(t, 30*time.Second, "redelivered events handled", func() bool {
		return events(projector.OutcomeDuplicate)+events(projector.OutcomeStale) >= noops+float64(len(recs2))
	})
	after := snapshot(t, es, index, append(slices.Clone(ids), gapID))
	if !mapsEqual(before, after) {
		t.Errorf("index changed after redelivery:\nbefore %v\nafter  %v", before, after)
	}
	if got := events(projector.OutcomeApplied); got != applied {
		t.Errorf("applied went from %v to %v on redelivery, want unchanged", applied, got)
	}
}

func mapsEqual(a, b map[string]stored) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func headers(r *kgo.Record) map[string]string {
	h := map[string]string{}
	for _, x := range r.Headers {
		h[x.Key] = string(x.Value)
	}
	return h
}

func consumeAll(t *testing.T, topic string, n int) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(testenv.KafkaBrokers()...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var out []*kgo.Record
	for len(out) < n {
		f := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("got %d of %d records from %s", len(out), n, topic)
		}
		out = append(out, f.Records()...)
	}
	return out
}
