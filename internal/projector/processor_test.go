package projector

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kgo"

	"cqrsflow/internal/envelope"
	"cqrsflow/internal/esindex"
	"cqrsflow/internal/projection/products"
)

// memStore is an in-memory Store honouring external versions; fail makes
// the next calls fail.
type memStore struct {
	mu       sync.Mutex
	docs     map[string]esindex.Hit
	failNext int
	itemErr  int // bulk item errors (500) to return before succeeding
	calls    int
}

func (s *memStore) MGet(_ context.Context, ids []string) (map[string]esindex.Hit, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	if s.failNext > 0 {
		s.failNext--
		return nil, fmt.Errorf("%w: connection refused", esindex.ErrUnavailable)
	}
	out := map[string]esindex.Hit{}
	for _, id := range ids {
		if h, ok := s.docs[id]; ok {
			out[id] = h
		}
	}
	return out, nil
}

func (s *memStore) Bulk(_ context.Context, ops []esindex.Op) ([]esindex.Result, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]esindex.Result, len(ops))
	for i, op := range ops {
		if s.itemErr > 0 {
			s.itemErr--
			out[i] = esindex.Result{Status: 500, Err: "shard failure"}
			continue
		}
		if cur, ok := s.docs[op.ID]; ok && (cur.Version > op.Version || (cur.Version == op.Version && !op.AllowEqual)) {
			out[i] = esindex.Result{Status: 409, Conflict: true}
			continue
		}
		s.docs[op.ID] = esindex.Hit{Version: op.Version, Source: op.Doc}
		out[i] = esindex.Result{Status: 201}
	}
	return out, nil
}

type memDLQ struct {
	mu       sync.Mutex
	reasons  []string
	letters  []DeadLetter
	failNext int // sends to fail (Kafka unavailable) before succeeding
}

func (d *memDLQ) Send(_ context.Context, letters []*DeadLetter) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(letters) > 0 && d.failNext > 0 {
		d.failNext--
		return errors.New("kafka: broker not available")
	}
	for _, l := range letters {
		d.reasons = append(d.reasons, l.Reason)
		l.DLQPartition, l.DLQOffset = 0, int64(len(d.letters))
		d.letters = append(d.letters, *l)
	}
	return nil
}

// codes returns the reason codes of the dead letters, by aggregate id.
func (d *memDLQ) codes() map[string][]string {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := map[string][]string{}
	for _, l := range d.letters {
		out[l.AggregateID] = append(out[l.AggregateID], fmt.Sprintf("%s@%d", l.Code, l.Version))
	}
	return out
}

func newTestProcessor() (*processor, *memStore, *memDLQ, *Metrics) {
	st := &memStore{docs: map[string]esindex.Hit{}}
	dlq := &memDLQ{}
	m := NewMetrics(prometheus.NewRegistry())
	parts := newPartitions(m.Parked.WithLabelValues("products"))
	quar := newQuarantineSet(m.Quarantined.WithLabelValues("products"))
	p := newProcessor(products.Projection, st, dlq, quar, parts, m, slog.New(slog.NewTextHandler(io.Discard, nil)),
		Config{BackoffMin: time.Millisecond, BackoffMax: 5 * time.Millisecond})
	return p, st, dlq, m
}

var offset int64

func rec(id, typ string, version int64, payload string) *kgo.Record {
	e := envelope.Envelope{EventID: fmt.Sprintf("%s-%d-%s", id, version, typ), EventType: typ, SchemaVersion: 1, AggregateType: "product",
		AggregateID: id, Version: version, OccurredAt: time.Unix(version, 0), RecordedAt: time.Now(), Payload: json.RawMessage(payload)}
	b, _ := json.Marshal(e)
	offset++
	return &kgo.Record{Topic: "t", Partition: 0, Offset: offset, Key: []byte(id), Value: b}
}

const pl = `{"name":"n","description":"d","price":1,"stock":1}`

func count(m *Metrics, outcome string) float64 {
	return testutil.ToFloat64(m.Events.WithLabelValues("products", outcome))
}

func TestProcessorOutcomes(t *testing.T) {
	p, st, dlq, m := newTestProcessor()
	ctx := context.Background()
	c1 := rec("a", products.Created, 1, pl)
	batch := []*kgo.Record{
		rec("a", products.Updated, 2, pl), // before its predecessor in the batch: sorted by version
		c1,
		c1, // duplicate in the same batch
		rec("b", products.Created, 1, pl),
		rec("b", products.Updated, 3, pl), // gap → parked
		func() *kgo.Record { offset++; return &kgo.Record{Topic: "t", Offset: offset, Value: []byte("nope")} }(),
		rec("c", "ProductMelted", 1, `{}`),
	}
	if err := p.handle(ctx, batch); err != nil {
		t.Fatal(err)
	}
	if st.docs["a"].Version != 2 || st.docs["b"].Version != 1 {
		t.Fatalf("docs %v", st.docs)
	}
	want := map[string]float64{OutcomeApplied: 3, OutcomeDuplicate: 1, OutcomeParked: 1, OutcomeDLQ: 2, OutcomeStale: 0}
	for o, n := range want {
		if got := count(m, o); got != n {
			t.Errorf("%s = %v, want %v", o, got, n)
		}
	}
	if len(dlq.reasons) != 2 {
		t.Errorf("dlq reasons %v", dlq.reasons)
	}
	// The commit stops at the parked record.
	offs := p.parts.toCommit(nil)
	if got := offs["t"][0].Offset; got != batch[4].Offset {
		t.Errorf("committable offset %d, want the parked record's %d", got, batch[4].Offset)
	}
	if testutil.ToFloat64(m.VersionGaps) != 1 || testutil.ToFloat64(m.Parked.WithLabelValues("products")) != 1 {
		t.Error("gap not counted")
	}
	// Stale: an older event after a newer one.
	if err := p.handle(ctx, []*kgo.Record{rec("a", products.Updated, 1, pl)}); err != nil {
		t.Fatal(err)
	}
	if count(m, OutcomeStale) != 1 {
		t.Errorf("stale = %v, want 1", count(m, OutcomeStale))
	}
	// The missing event closes the gap: v2 and the parked v3 apply, commit moves past.
	closer := rec("b", products.Updated, 2, pl)
	if err := p.handle(ctx, []*kgo.Record{closer}); err != nil {
		t.Fatal(err)
	}
	if st.docs["b"].Version != 3 {
		t.Errorf("b at v%d, want 3", st.docs["b"].Version)
	}
	if got := p.parts.toCommit(nil)["t"][0].Offset; got != closer.Offset+1 {
		t.Errorf("committable %d, want %d", got, closer.Offset+1)
	}
	if testutil.ToFloat64(m.Parked.WithLabelValues("products")) != 0 {
		t.Error("parked gauge not cleared")
	}
}

// Elasticsearch failures (request and per-item) are retried until they
// succeed; nothing is counted or committable before.
func TestProcessorRetriesElasticsearch(t *testing.T) {
	p, st, _, m := newTestProcessor()
	st.failNext = 3
	st.itemErr = 2
	if err := p.handle(context.Background(), []*kgo.Record{rec("x", products.Created, 1, pl)}); err != nil {
		t.Fatal(err)
	}
	if st.docs["x"].Version != 1 || count(m, OutcomeApplied) != 1 {
		t.Errorf("after retries: docs %v applied %v", st.docs, count(m, OutcomeApplied))
	}
	if st.calls < 6 {
		t.Errorf("mget calls %d, want >= 6 (3 failures + 2 item errors + success)", st.calls)
	}
}

// A cancelled context ends the retries with an error and leaves nothing
// committable.
func TestProcessorCancelledWhileDown(t *testing.T) {
	p, st, _, _ := newTestProcessor()
	st.failNext = 1 << 30
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err := p.handle(ctx, []*kgo.Record{rec("y", products.Created, 1, pl)})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want deadline exceeded", err)
	}
	if offs := p.parts.toCommit(nil); len(offs) != 0 {
		t.Errorf("committable after failure: %v", offs)
	}
}

// A 409 from Elasticsearch (a newer version is stored) is stale, not an error.
func TestProcessorConflictIsStale(t *testing.T) {
	p, st, _, m := newTestProcessor()
	st.docs["z"] = esindex.Hit{Version: 1, Source: json.RawMessage(`{"id":"z","version":1,"last_event_id":"e"}`)}
	r := rec("z", products.Updated, 2, pl)
	// Someone writes v5 between our mget and bulk.
	p.store = &racingStore{memStore: st}
	if err := p.handle(context.Background(), []*kgo.Record{r}); err != nil {
		t.Fatal(err)
	}
	if count(m, OutcomeStale) != 1 || count(m, OutcomeApplied) != 0 {
		t.Errorf("stale %v applied %v, want 1 and 0", count(m, OutcomeStale), count(m, OutcomeApplied))
	}
}

type racingStore struct{ *memStore }

func (s *racingStore) Bulk(ctx context.Context, ops []esindex.Op) ([]esindex.Result, error) {
	s.mu.Lock()
	s.docs["z"] = esindex.Hit{Version: 5, Source: json.RawMessage(`{}`)}
	s.mu.Unlock()
	return s.memStore.Bulk(ctx, ops)
}

// A gap closed by another writer (the missing version appears in
// Elasticsearch, e.g. written by a rebuild through the alias) is noticed
// with the next batch even if that batch has no event of the aggregate.
func TestProcessorGapClosedElsewhere(t *testing.T) {
	p, st, _, m := newTestProcessor()
	ctx := context.Background()
	if err := p.handle(ctx, []*kgo.Record{rec("g", products.Created, 1, pl), rec("g", products.Updated, 3, pl)}); err != nil {
		t.Fatal(err)
	}
	if testutil.ToFloat64(m.Parked.WithLabelValues("products")) != 1 {
		t.Fatal("v3 not parked")
	}
	st.mu.Lock()
	st.docs["g"] = esindex.Hit{Version: 2, Source: json.RawMessage(`{"id":"g","name":"x","version":2,"last_event_id":"other"}`)}
	st.mu.Unlock()
	if err := p.handle(ctx, []*kgo.Record{rec("other", products.Created, 1, pl)}); err != nil {
		t.Fatal(err)
	}
	if st.docs["g"].Version != 3 || testutil.ToFloat64(m.Parked.WithLabelValues("products")) != 0 {
		t.Errorf("g at v%d, parked %v; want v3 and nothing parked", st.docs["g"].Version, testutil.ToFloat64(m.Parked.WithLabelValues("products")))
	}
}

// A batch large enough to be decoded and folded in parallel (on more than
// one CPU): every key ends at its last version, poison records anywhere in
// the batch reach the DLQ, and an unprojectable event is reported for
// its own key only.
func TestProcessorLargeBatchParallel(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(4))
	p, st, dlq, m := newTestProcessor()
	const keys, versions = 600, 5
	var batch []*kgo.Record
	for v := int64(1); v <= versions; v++ {
		for k := range keys {
			typ := products.Updated
			if v == 1 {
				typ = products.Created
			}
			batch = append(batch, rec(fmt.Sprintf("k%d", k), typ, v, pl))
			if k%250 == 0 && v == 3 {
				offset++
				batch = append(batch, &kgo.Record{Topic: "t", Offset: offset, Value: []byte(`{"broken`)})
			}
		}
	}
	batch = append(batch, rec("k7", "ProductMelted", versions+1, `{}`))
	if len(batch) < 4*parallelMin {
		t.Fatalf("batch of %d records does not reach the parallel path", len(batch))
	}
	if err := p.handle(context.Background(), batch); err != nil {
		t.Fatal(err)
	}
	if len(st.docs) != keys {
		t.Fatalf("%d documents, want %d", len(st.docs), keys)
	}
	for id, h := range st.docs {
		if h.Version != versions {
			t.Fatalf("%s at v%d, want v%d", id, h.Version, versions)
		}
	}
	if got, want := count(m, OutcomeApplied), float64(keys*versions); got != want {
		t.Errorf("applied = %v, want %v", got, want)
	}
	if got := len(dlq.reasons); got != 4 { // 3 undecodable + 1 unknown event type
		t.Errorf("%d DLQ records, want 4: %v", got, dlq.reasons)
	}
}
