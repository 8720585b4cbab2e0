//go:build integration

package relay

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"cqrsflow/internal/envelope"
	"cqrsflow/internal/outbox"
	"cqrsflow/internal/testenv"
	"cqrsflow/internal/topics"
)

var aggTypes = []string{"product", "order"}

// itEnv is one test's private schema and topic prefix on a Kafka cluster.
type itEnv struct {
	pg      *testenv.PG
	prefix  string
	brokers []string
	adm     *kadm.Client
	topics  []string // event topics
}

func newEnv(t *testing.T, brokers []string) *itEnv {
	t.Helper()
	e := &itEnv{pg: testenv.Postgres(t), prefix: strings.ReplaceAll(testenv.Name(t), "_", "-"), brokers: brokers}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	e.adm = kadm.NewClient(cl)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	specs := topics.EventSpecs(e.prefix, aggTypes, 12, 1, slog.New(slog.DiscardHandler))
	if err := topics.EnsureAll(ctx, e.adm, specs); err != nil {
		t.Fatalf("creating topics on %v: %v (run `make up`)", brokers, err)
	}
	var names []string
	for _, s := range specs {
		names = append(names, s.Name)
	}
	t.Cleanup(func() {
		cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := e.adm.DeleteTopics(cctx, names...); err != nil {
			t.Logf("cleanup: deleting topics: %v", err)
		}
	})
	for _, a := range aggTypes {
		e.topics = append(e.topics, envelope.Topic(e.prefix, a))
	}
	return e
}

// appendSQL appends one event the way the API does: the aggregate's head
// row is upserted (and so locked) first, then the event and its outbox row.
const appendSQL = `WITH a AS (
	INSERT INTO aggregates (aggregate_type, aggregate_id, version) VALUES ($1, $2, 1)
	ON CONFLICT (aggregate_type, aggregate_id) DO UPDATE SET version = aggregates.version + 1, updated_at = clock_timestamp()
	RETURNING version
), e AS (
	INSERT INTO events (event_id, aggregate_type, aggregate_id, version, event_type, schema_version, payload, metadata, occurred_at)
	SELECT gen_random_uuid(), $1, $2, a.version, $3, 1, $4::jsonb, '{"correlation_id":"it"}'::jsonb, clock_timestamp() FROM a
	RETURNING *
)
INSERT INTO outbox (` + outbox.Columns + `) SELECT ` + outbox.FromEvents + ` FROM e ev
RETURNING (SELECT version FROM e)`

func appendTx(ctx context.Context, tx pgx.Tx, aggType, aggID string) (int64, error) {
	var v int64
	if err := tx.QueryRow(ctx, appendSQL, aggType, aggID, "E", `{"n":1}`).Scan(&v); err != nil {
		return 0, err
	}
	_, err := tx.Exec(ctx, `SELECT pg_notify($1, $2)`, outbox.NotifyChannel, aggType)
	return v, err
}

func appendEvent(ctx context.Context, pool *pgxpool.Pool, aggType, aggID string) (int64, error) {
	var v int64
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		var err error
		v, err = appendTx(ctx, tx, aggType, aggID)
		return err
	})
	return v, err
}

// aggregate is (type, id).
type aggregate struct{ typ, id string }

func newAggregates(n int) []aggregate {
	out := make([]aggregate, n)
	for i := range out {
		out[i] = aggregate{aggTypes[i%len(aggTypes)], uuid.NewString()}
	}
	return out
}

// writeConcurrently appends total events over aggs with workers goroutines,
// pausing pause between appends of one worker; it returns versions per id.
func writeConcurrently(ctx context.Context, t *testing.T, pool *pgxpool.Pool, aggs []aggregate, total, workers int, pause time.Duration) map[string]int64 {
	t.Helper()
	var mu sync.Mutex
	counts := map[string]int64{}
	var wg sync.WaitGroup
	var next int64
	var failed error
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for {
				mu.Lock()
				if next >= int64(total) || failed != nil {
					mu.Unlock()
					return
				}
				next++
				mu.Unlock()
				a := aggs[rng.IntN(len(aggs))]
				v, err := appendEvent(ctx, pool, a.typ, a.id)
				mu.Lock()
				if err != nil {
					failed = err
				} else if v > counts[a.id] {
					counts[a.id] = v
				}
				mu.Unlock()
				if pause > 0 {
					time.Sleep(pause)
				}
			}
		}()
	}
	wg.Wait()
	if failed != nil {
		t.Fatalf("appending events: %v", failed)
	}
	return counts
}

// prefill inserts n events spread over aggs aggregates (ids agg-<k>) and
// their outbox rows, in version order per aggregate.
func prefill(ctx context.Context, t *testing.T, pool *pgxpool.Pool, n, aggs int) map[string]int64 {
	t.Helper()
	_, err := pool.Exec(ctx, `INSERT INTO events (event_id, aggregate_type, aggregate_id, version, event_type, schema_version, payload, occurred_at)
		SELECT gen_random_uuid(), CASE WHEN g % 2 = 0 THEN 'order' ELSE 'product' END, 'agg-' || (g % $2), (g / $2) + 1, 'E', 1,
		       jsonb_build_object('n', g, 'pad', repeat('x', 200)), clock_timestamp()
		FROM generate_series(0, $1 - 1) g ORDER BY g`, n, aggs)
	if err != nil {
		t.Fatalf("prefill events: %v", err)
	}
	_, err = pool.Exec(ctx, outbox.CopyFromEventsSQL)
	if err != nil {
		t.Fatalf("prefill outbox: %v", err)
	}
	want := map[string]int64{}
	for g := 0; g < n; g++ {
		want["agg-"+strconv.Itoa(g%aggs)] = int64(g/aggs) + 1
	}
	return want
}

func outboxCount(ctx context.Context, t *testing.T, pool *pgxpool.Pool) int64 {
	t.Helper()
	var n int64
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM outbox`).Scan(&n); err != nil {
		t.Fatalf("counting outbox: %v", err)
	}
	return n
}

func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

type runningRelay struct {
	*Relay
	reg  *prometheus.Registry
	stop func()
}

// startRelay runs an in-process relay until the returned stop is called
// (or the test ends).
func startRelay(t *testing.T, e *itEnv, id string, mut func(*Config), deliveryTimeout time.Duration) *runningRelay {
	t.Helper()
	return startRelayKafka(t, e, id, mut, ProducerOpts(e.brokers, deliveryTimeout))
}

// startRelayKafka is startRelay with the franz-go options of its two
// producers (the publishing one and the probe, as the binary has).
func startRelayKafka(t *testing.T, e *itEnv, id string, mut func(*Config), kopts []kgo.Opt) *runningRelay {
	t.Helper()
	return startRelayWith(t, e, id, mut, kopts, nil)
}

// startRelayWith is startRelayKafka with each publishing producer
// wrapped by wrap (when not nil).
func startRelayWith(t *testing.T, e *itEnv, id string, mut func(*Config), kopts []kgo.Opt, wrap func(Producer) Producer) *runningRelay {
	t.Helper()
	var clients []*kgo.Client // closed after the relay stopped (a wrapper hides Close)
	newProducer := func() (Producer, error) {
		kc, err := kgo.NewClient(kopts...)
		if err != nil {
			return nil, err
		}
		clients = append(clients, kc)
		if wrap == nil {
			return kc, nil
		}
		return wrap(kc), nil
	}
	probe, err := kgo.NewClient(kopts...)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{ID: id, TopicPrefix: e.prefix, BatchSize: 500, PollInterval: 100 * time.Millisecond, LeaseTTL: 3 * time.Second,
		StatsInterval: 200 * time.Millisecond, Probe: probe}
	if mut != nil {
		mut(&cfg)
	}
	reg := prometheus.NewRegistry()
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	r, err := New(cfg, e.pg.Pool, newProducer, reg, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("relay %s: %v", id, err)
				}
			case <-time.After(60 * time.Second):
				t.Errorf("relay %s did not stop within 60s", id)
			}
			r.Close()
			for _, kc := range clients {
				kc.Close()
			}
			probe.Close()
		})
	}
	t.Cleanup(stop)
	return &runningRelay{Relay: r, reg: reg, stop: stop}
}

// consumed is one record read back from Kafka.
type consumed struct {
	topic     string
	partition int32
	offset    int64
	key       string
	value     []byte
	env       *envelope.Envelope
}

// consumeAll reads the topics from the start until want distinct events
// were seen, then up to the end offsets of that moment (so duplicates
// written so far are counted too).
func consumeAll(t *testing.T, brokers, topicNames []string, want int, timeout time.Duration) []consumed {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topicNames...),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var out []consumed
	distinct := map[string]bool{}
	last := map[string]int64{} // topic/partition → last offset
	poll := func() {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return
		}
		fs.EachError(func(tp string, p int32, err error) { t.Logf("fetch %s/%d: %v", tp, p, err) })
		fs.EachRecord(func(r *kgo.Record) {
			env, err := envelope.Decode(r.Value)
			if err != nil {
				t.Errorf("%s/%d@%d: %v", r.Topic, r.Partition, r.Offset, err)
				return
			}
			distinct[env.EventID] = true
			last[fmt.Sprintf("%s/%d", r.Topic, r.Partition)] = r.Offset
			out = append(out, consumed{r.Topic, r.Partition, r.Offset, string(r.Key), r.Value, env})
		})
	}
	for len(distinct) < want && ctx.Err() == nil {
		poll()
	}
	if len(distinct) < want {
		t.Fatalf("consumed %d distinct events within %s, want %d", len(distinct), timeout, want)
	}
	adm := kadm.NewClient(cl)
	ends, err := adm.ListEndOffsets(ctx, topicNames...)
	if err != nil {
		t.Fatalf("listing end offsets: %v", err)
	}
	caughtUp := func() bool {
		ok := true
		ends.Each(func(o kadm.ListedOffset) {
			if o.Offset > 0 {
				if l, seen := last[fmt.Sprintf("%s/%d", o.Topic, o.Partition)]; !seen || l < o.Offset-1 {
					ok = false
				}
			}
		})
		return ok
	}
	for !caughtUp() && ctx.Err() == nil {
		poll()
	}
	if !caughtUp() {
		t.Fatalf("did not reach the end offsets within %s", timeout)
	}
	return out
}

// checkStream asserts the relay's delivery contract on what was consumed:
//   - every expected event is present: for each aggregate id, versions
//     1..want[id] (and no aggregate or version that was not written);
//   - each key is in exactly one partition;
//   - per key, in partition (offset) order, the first occurrences of its
//     events have versions 1, 2, 3, … with no gap and no inversion;
//   - every later occurrence of an event id is an exact duplicate (same
//     bytes as the first) — a redelivery, never a changed event.
//
// It returns the number of duplicate records.
func checkStream(t *testing.T, recs []consumed, want map[string]int64) int {
	t.Helper()
	sort.SliceStable(recs, func(i, j int) bool {
		if recs[i].topic != recs[j].topic {
			return recs[i].topic < recs[j].topic
		}
		if recs[i].partition != recs[j].partition {
			return recs[i].partition < recs[j].partition
		}
		return recs[i].offset < recs[j].offset
	})
	part := map[string]string{}
	first := map[string][]byte{}
	lastV := map[string]int64{}
	dups := 0
	bad := 0
	for _, r := range recs {
		if r.key != r.env.AggregateID {
			t.Fatalf("record key %q != aggregate_id %q", r.key, r.env.AggregateID)
		}
		tp := fmt.Sprintf("%s/%d", r.topic, r.partition)
		if p, ok := part[r.key]; ok && p != tp {
			t.Fatalf("key %s in two partitions: %s and %s", r.key, p, tp)
		}
		part[r.key] = tp
		if f, ok := first[r.env.EventID]; ok {
			if !bytes.Equal(f, r.value) {
				t.Fatalf("event %s redelivered with different bytes", r.env.EventID)
			}
			dups++
			continue
		}
		first[r.env.EventID] = r.value
		if r.env.Version != lastV[r.key]+1 {
			bad++
			if bad < 10 {
				t.Errorf("key %s: first occurrence of version %d after version %d (%s@%d)", r.key, r.env.Version, lastV[r.key], tp, r.offset)
			}
		}
		if r.env.Version > lastV[r.key] {
			lastV[r.key] = r.env.Version
		}
	}
	if bad > 0 {
		t.Fatalf("%d order violations", bad)
	}
	for id, v := range want {
		if lastV[id] != v {
			t.Errorf("aggregate %s: last version on Kafka %d, want %d", id, lastV[id], v)
		}
	}
	if len(lastV) != len(want) {
		t.Errorf("%d aggregates on Kafka, want %d", len(lastV), len(want))
	}
	if t.Failed() {
		t.FailNow()
	}
	return dups
}

func total(want map[string]int64) int {
	n := 0
	for _, v := range want {
		n += int(v)
	}
	return n
}

func shardOf(ctx context.Context, t *testing.T, pool *pgxpool.Pool, aggID string) int16 {
	t.Helper()
	var s int16
	if err := pool.QueryRow(ctx, `SELECT `+outbox.ShardSQL("$1")+`::smallint`, aggID).Scan(&s); err != nil {
		t.Fatal(err)
	}
	return s
}

func repoRoot(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Dir(strings.TrimSpace(string(out)))
}

// privateKafka starts a Kafka broker of its own (deploy/local/kafka.sh
// with private ports and state dir), so a test can stop it without
// touching the shared broker. It returns the bootstrap address and the
// broker's pid; the broker is stopped and purged on cleanup.
func privateKafka(t *testing.T) (string, int) {
	t.Helper()
	root := repoRoot(t)
	// Every port the script binds is the test's own: the SASL_SSL port
	// defaults to the shared stack's (make exports KAFKA_SASL_PORT), which
	// a running `make up` broker holds.
	port, cport, sport := testenv.FreePort(t), testenv.FreePort(t), testenv.FreePort(t)
	dir := t.TempDir()
	env := append(os.Environ(), "KAFKA_PORT="+strconv.Itoa(port), "KAFKA_CONTROLLER_PORT="+strconv.Itoa(cport), "KAFKA_SASL_PORT="+strconv.Itoa(sport),
		"CQRSFLOW_STATE_DIR="+dir, "KAFKA_HEAP_OPTS=-Xms256m -Xmx384m", "KAFKA_WAIT=150")
	// Run copies of the scripts: bash reads a script as it goes, so an edit
	// of the working tree during the test must not break start/stop.
	local := filepath.Join(root, "deploy/local")
	scripts := t.TempDir()
	for _, f := range []string{"kafka.sh", "lib.sh"} {
		b, err := os.ReadFile(filepath.Join(local, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(scripts, f), b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	env = append(env, "LOCAL_DIR="+local)
	script := filepath.Join(scripts, "kafka.sh")
	pidOf := func() int {
		b, err := os.ReadFile(filepath.Join(dir, "kafka/kafka.pid"))
		if err != nil {
			return 0
		}
		pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		return pid
	}
	t.Cleanup(func() {
		if pid := pidOf(); pid > 0 {
			_ = syscall.Kill(pid, syscall.SIGCONT)
		}
		cmd := exec.Command("bash", script, "stop", "--purge")
		cmd.Env = env
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Logf("stopping private kafka: %v\n%s", err, out)
		}
	})
	cmd := exec.Command("bash", script, "start")
	cmd.Env = env
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("starting private kafka on port %d: %v\n%s", port, err, out)
	}
	pid := pidOf()
	if pid == 0 {
		t.Fatal("private kafka: no pid file")
	}
	return fmt.Sprintf("127.0.0.1:%d", port), pid
}

// markOf is the highest low-water mark of the publish loops that serve
// shard: its split loop's and the merged loop's (see loops).
func markOf(rr *runningRelay, shard int16) float64 {
	split := testutil.ToFloat64(rr.m.lowWater.WithLabelValues(strconv.Itoa(int(shard) % rr.cfg.Workers)))
	if rr.cfg.Workers == 1 {
		return split
	}
	return max(split, testutil.ToFloat64(rr.m.lowWater.WithLabelValues("all")))
}
