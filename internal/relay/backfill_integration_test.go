//go:build integration

package relay

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kgo"

	"cqrsflow/internal/envelope"
	"cqrsflow/internal/testenv"
	"cqrsflow/internal/topics"
)

// backfillTopic creates <prefix>.<aggType>.events with partitions
// partitions under a prefix of the test's own and returns its name.
func backfillTopic(t *testing.T, e *itEnv, prefix, aggType string, partitions int32) string {
	t.Helper()
	name := envelope.Topic(prefix, aggType)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := topics.Ensure(ctx, e.adm, topics.Spec{Name: name, Partitions: partitions, ReplicationFactor: 1,
		Configs: topics.InfiniteRetention(), Log: slog.New(slog.DiscardHandler)}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, _ = e.adm.DeleteTopics(cctx, name)
	})
	return name
}

func backfillProducer(t *testing.T, e *itEnv) *kgo.Client {
	t.Helper()
	kc, err := kgo.NewClient(ProducerOpts(e.brokers, 30*time.Second)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(kc.Close)
	return kc
}

func runBackfill(ctx context.Context, t *testing.T, e *itEnv, p Producer, o BackfillOptions) (BackfillResult, error) {
	t.Helper()
	if o.BatchSize == 0 {
		o.BatchSize = 100
	}
	return Backfill(ctx, e.pg.Pool, p, NewBackfillMetrics(prometheus.NewRegistry()), o, slog.New(slog.DiscardHandler))
}

// onlyType keeps the aggregates of prefill's want whose type is typ
// (prefill with an even aggregate count: agg-<odd> are products).
func onlyType(want map[string]int64, typ string) map[string]int64 {
	out := map[string]int64{}
	for id, v := range want {
		k, _ := strconv.Atoi(strings.TrimPrefix(id, "agg-"))
		if (k%2 == 1) == (typ == "product") {
			out[id] = v
		}
	}
	return out
}

// A deleted topic filled again: every product event on the fresh topic
// exactly once, in version order per key, as the same bytes the live
// relay publishes; the progress row says the run finished at its target;
// the metrics count what was published.
func TestBackfillFillsAFreshTopic(t *testing.T) {
	e := newEnv(t, testenv.KafkaBrokers())
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	want := onlyType(prefill(ctx, t, e.pg.Pool, 3000, 40), "product")
	// The live relay publishes the same events to the live topic: the
	// backfilled records must be byte for byte the same.
	r := startRelay(t, e, "r1", nil, 30*time.Second)
	waitFor(t, "outbox drained", 30*time.Second, func() bool { return outboxCount(ctx, t, e.pg.Pool) == 0 })
	r.stop()
	live := consumeAll(t, e.brokers, e.topics[:1], total(want), 30*time.Second)

	fresh := backfillTopic(t, e, e.prefix+"-fresh", "product", 6)
	reg := prometheus.NewRegistry()
	m := NewBackfillMetrics(reg)
	var progress strings.Builder
	res, err := Backfill(ctx, e.pg.Pool, backfillProducer(t, e), m, BackfillOptions{Run: "fresh", Topic: fresh, BatchSize: 128,
		Selection: BackfillSelection{AggregateType: "product"}, Progress: &progress}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if res.Published != int64(total(want)) || res.Total != res.Published || res.Resumed || res.Position != res.Target {
		t.Fatalf("result %+v, want %d published up to the target", res, total(want))
	}
	got := consumeAll(t, e.brokers, []string{fresh}, total(want), 30*time.Second)
	if dups := checkStream(t, got, want); dups != 0 {
		t.Fatalf("%d duplicates on a topic backfilled once", dups)
	}
	if len(got) != total(want) {
		t.Fatalf("%d records, want %d", len(got), total(want))
	}
	liveBytes := map[string]string{}
	for _, c := range live {
		liveBytes[c.env.EventID] = string(c.value)
	}
	for _, c := range got {
		if liveBytes[c.env.EventID] != string(c.value) {
			t.Fatalf("event %s: backfilled %s\nlive %s", c.env.EventID, c.value, liveBytes[c.env.EventID])
		}
	}
	if n := testutil.ToFloat64(m.published.WithLabelValues(fresh)); n != float64(total(want)) {
		t.Errorf("cqrsflow_backfill_published_total = %v, want %d", n, total(want))
	}
	if p, tg := testutil.ToFloat64(m.position), testutil.ToFloat64(m.target); p != tg || tg != float64(res.Target) {
		t.Errorf("position gauge %v, target gauge %v, want both %d", p, tg, res.Target)
	}
	var pos, published int64
	var finished bool
	if err := e.pg.Pool.QueryRow(ctx, `SELECT position, published, finished_at IS NOT NULL FROM backfill_progress WHERE run = 'fresh'`).
		Scan(&pos, &published, &finished); err != nil {
		t.Fatal(err)
	}
	if pos != res.Target || published != res.Total || !finished {
		t.Fatalf("progress row: position %d published %d finished %v; want %d %d true", pos, published, finished, res.Target, res.Total)
	}
	if !strings.Contains(progress.String(), "done; "+strconv.Itoa(total(want))+" record(s)") {
		t.Errorf("progress output: %q", progress.String())
	}
}

// Backfill into the live topic while the relay publishes and writes go
// on: every event is on the topic and the first occurrences of each key
// stay in version order (the copies are older versions again).
func TestBackfillBesideTheLiveRelay(t *testing.T) {
	e := newEnv(t, testenv.KafkaBrokers())
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	aggs := newAggregates(30)
	first := writeConcurrently(ctx, t, e.pg.Pool, aggs, 600, 4, 0)
	startRelay(t, e, "r1", nil, 30*time.Second)
	var wg sync.WaitGroup
	var more map[string]int64
	wg.Add(1)
	go func() {
		defer wg.Done()
		more = writeConcurrently(ctx, t, e.pg.Pool, aggs, 1500, 4, time.Millisecond)
	}()
	var res BackfillResult
	var bErr error
	for i := range 3 { // three passes while the writes go on, the later ones resumed
		res, bErr = runBackfill(ctx, t, e, backfillProducer(t, e), BackfillOptions{Run: "live", Topic: e.topics[0], BatchSize: 50,
			Selection: BackfillSelection{AggregateType: "product"}})
		if bErr != nil {
			break
		}
		if i > 0 && !res.Resumed {
			t.Errorf("pass %d did not resume the run", i)
		}
	}
	wg.Wait()
	if bErr != nil {
		t.Fatal(bErr)
	}
	waitFor(t, "outbox drained", 30*time.Second, func() bool { return outboxCount(ctx, t, e.pg.Pool) == 0 })
	want := map[string]int64{}
	for _, a := range aggs {
		if a.typ == "product" {
			if v := max(first[a.id], more[a.id]); v > 0 {
				want[a.id] = v
			}
		}
	}
	got := consumeAll(t, e.brokers, e.topics[:1], total(want), 30*time.Second)
	dups := checkStream(t, got, want)
	if dups == 0 || res.Total == 0 {
		t.Fatalf("no copies on the live topic (%d duplicates, %d backfilled): the backfill published nothing", dups, res.Total)
	}
	t.Logf("%d records, %d copies, %d backfilled", len(got), dups, res.Total)
}

// Selections: a list of aggregates, a start position, a start time; the
// events the relay holds back (a dead letter and its aggregate's later
// events, a discarded dead letter) are not published; a run resumed with
// another selection is refused; a finished run resumed publishes only
// what was appended since.
func TestBackfillSelections(t *testing.T) {
	e := newEnv(t, testenv.KafkaBrokers())
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	prefill(ctx, t, e.pg.Pool, 400, 8) // products agg-1,3,5,7: 50 versions each
	kc := backfillProducer(t, e)

	// A list of aggregates.
	topicA := backfillTopic(t, e, e.prefix+"-a", "product", 3)
	if _, err := runBackfill(ctx, t, e, kc, BackfillOptions{Run: "a", Topic: topicA,
		Selection: BackfillSelection{AggregateType: "product", AggregateIDs: []string{"agg-3", "agg-7", "agg-404"}}}); err != nil {
		t.Fatal(err)
	}
	checkStream(t, consumeAll(t, e.brokers, []string{topicA}, 100, 30*time.Second), map[string]int64{"agg-3": 50, "agg-7": 50})

	// From a position: only events at or above it.
	var from int64
	if err := e.pg.Pool.QueryRow(ctx, `SELECT global_position FROM events WHERE aggregate_id = 'agg-5' AND version = 41`).Scan(&from); err != nil {
		t.Fatal(err)
	}
	topicP := backfillTopic(t, e, e.prefix+"-p", "product", 3)
	if _, err := runBackfill(ctx, t, e, kc, BackfillOptions{Run: "p", Topic: topicP,
		Selection: BackfillSelection{AggregateType: "product", FromPosition: from}}); err != nil {
		t.Fatal(err)
	}
	recs := consumeAll(t, e.brokers, []string{topicP}, 38, 30*time.Second)
	for _, r := range recs {
		if r.env.GlobalPosition < from || r.env.Version < 41 {
			t.Fatalf("from position %d: got %s v%d at %d", from, r.key, r.env.Version, r.env.GlobalPosition)
		}
	}
	if len(recs) != 38 { // g = 325..399 of prefill, odd g
		t.Fatalf("from position: %d records, want 38", len(recs))
	}

	// From a time, with a dead letter (agg-1 v10: v10.. held) and a
	// discarded dead letter (agg-3 v50) in the way.
	at := time.Now().Add(-time.Hour)
	if _, err := e.pg.Pool.Exec(ctx, `UPDATE events SET recorded_at = CASE WHEN version < 5 THEN $1::timestamptz - interval '1 hour' ELSE $1::timestamptz + interval '1 second' END`, at); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`INSERT INTO outbox_dead_letters (id, shard, aggregate_type, aggregate_id, global_position, event_id, event_type, schema_version, version,
			payload, metadata, occurred_at, recorded_at, created_at, reason, error, attempts, first_failed_at, last_failed_at, relay_id)
		 SELECT o.id, o.shard, o.aggregate_type, o.aggregate_id, o.global_position, o.event_id, o.event_type, o.schema_version, o.version,
			o.payload, o.metadata, o.occurred_at, o.recorded_at, o.created_at, 'MESSAGE_TOO_LARGE', 'x', 3, now(), now(), 'r1'
		 FROM outbox o WHERE o.aggregate_id = 'agg-1' AND o.version = 10`,
		`INSERT INTO outbox_discarded (id, shard, aggregate_type, aggregate_id, global_position, event_id, event_type, schema_version, version,
			payload, metadata, occurred_at, recorded_at, created_at, reason, error, attempts, first_failed_at, last_failed_at, relay_id, dead_lettered_at)
		 SELECT o.id, o.shard, o.aggregate_type, o.aggregate_id, o.global_position, o.event_id, o.event_type, o.schema_version, o.version,
			o.payload, o.metadata, o.occurred_at, o.recorded_at, o.created_at, 'MESSAGE_TOO_LARGE', 'x', 3, now(), now(), 'r1', now()
		 FROM outbox o WHERE o.aggregate_id = 'agg-3' AND o.version = 50`,
	} {
		if _, err := e.pg.Pool.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	topicT := backfillTopic(t, e, e.prefix+"-t", "product", 3)
	sel := BackfillSelection{AggregateType: "product", FromTime: at}
	if _, err := runBackfill(ctx, t, e, kc, BackfillOptions{Run: "t", Topic: topicT, Selection: sel}); err != nil {
		t.Fatal(err)
	}
	// agg-1: v5..v9 (v10 dead, later held); agg-3: v5..v49; agg-5, agg-7: v5..v50.
	recs = consumeAll(t, e.brokers, []string{topicT}, 5+45+46+46, 30*time.Second)
	last := map[string]int64{}
	for _, r := range recs {
		if r.env.Version < 5 {
			t.Fatalf("from time: got %s v%d recorded before it", r.key, r.env.Version)
		}
		last[r.key] = max(last[r.key], r.env.Version)
	}
	if len(recs) != 142 || last["agg-1"] != 9 || last["agg-3"] != 49 || last["agg-5"] != 50 {
		t.Fatalf("from time: %d records, last versions %v", len(recs), last)
	}

	// The same run with another selection is refused.
	_, err := runBackfill(ctx, t, e, kc, BackfillOptions{Run: "t", Topic: topicT, Selection: BackfillSelection{AggregateType: "product"}})
	if !errors.Is(err, ErrBackfillMismatch) {
		t.Fatalf("resumed with another selection: %v, want ErrBackfillMismatch", err)
	}
	_, err = runBackfill(ctx, t, e, kc, BackfillOptions{Run: "t", Topic: topicA, Selection: sel})
	if !errors.Is(err, ErrBackfillMismatch) {
		t.Fatalf("resumed to another topic: %v, want ErrBackfillMismatch", err)
	}
	// A finished run resumed publishes what was appended since, only.
	if _, err := e.pg.Pool.Exec(ctx, `INSERT INTO events (event_id, aggregate_type, aggregate_id, version, event_type, schema_version, payload, occurred_at)
		VALUES (gen_random_uuid(), 'product', 'agg-5', 51, 'E', 1, '{"n":51}', now())`); err != nil {
		t.Fatal(err)
	}
	res, err := runBackfill(ctx, t, e, kc, BackfillOptions{Run: "t", Topic: topicT, Selection: sel})
	if err != nil || !res.Resumed || res.Published != 1 || res.Total != 143 {
		t.Fatalf("resumed finished run: %+v, %v; want 1 more record", res, err)
	}
}

// cancelAfter is a producer that cancels the backfill's context once n
// records were handed to it: an interruption in the middle of a batch.
type cancelAfter struct {
	Producer
	n      int64
	seen   atomic.Int64
	cancel context.CancelFunc
}

func (c *cancelAfter) Produce(ctx context.Context, r *kgo.Record, promise func(*kgo.Record, error)) {
	if c.seen.Add(1) == c.n {
		c.cancel()
	}
	c.Producer.Produce(ctx, r, promise)
}

// An interrupted backfill resumes from its last whole batch and finishes
// without a gap; what it publishes twice is at most the batch in flight.
func TestBackfillInterruptedResumes(t *testing.T) {
	e := newEnv(t, testenv.KafkaBrokers())
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	want := onlyType(prefill(ctx, t, e.pg.Pool, 2000, 20), "product")
	fresh := backfillTopic(t, e, e.prefix+"-fresh", "product", 6)
	kc := backfillProducer(t, e)
	for _, n := range []int64{130, 420} { // interrupted twice, mid-batch
		bctx, bcancel := context.WithCancel(ctx)
		res, err := runBackfill(bctx, t, e, &cancelAfter{Producer: kc, n: n, cancel: bcancel}, BackfillOptions{Run: "cut", Topic: fresh, BatchSize: 100, Selection: BackfillSelection{AggregateType: "product"}})
		bcancel()
		if err == nil || res.Position >= res.Target {
			t.Fatalf("interrupted run: %+v, %v; want an error before the target", res, err)
		}
	}
	res, err := runBackfill(ctx, t, e, kc, BackfillOptions{Run: "cut", Topic: fresh, BatchSize: 100, Selection: BackfillSelection{AggregateType: "product"}})
	if err != nil || !res.Resumed || res.Position != res.Target {
		t.Fatalf("resumed run: %+v, %v", res, err)
	}
	got := consumeAll(t, e.brokers, []string{fresh}, total(want), 30*time.Second)
	dups := checkStream(t, got, want)
	if dups > 2*100 {
		t.Fatalf("%d duplicates, want at most the two interrupted batches (200)", dups)
	}
	t.Logf("%d records, %d duplicates", len(got), dups)
}
