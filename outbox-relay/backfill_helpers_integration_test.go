//go:build integration

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/elastic/go-elasticsearch/v8"
	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"cqrsflow/internal/envelope"
	"cqrsflow/internal/esindex"
	"cqrsflow/internal/outbox"
	"cqrsflow/internal/projection/products"
	"cqrsflow/internal/testenv"
	"cqrsflow/internal/testenv/binary"
)

var (
	binOnce sync.Once
	binDir  string
	binErr  error
)

// bins builds outbox-relay and projector once per test binary.
func bins(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		binDir, binErr = os.MkdirTemp("", "cqrsflow-backfill-bins")
		if binErr != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		binErr = binary.Build(ctx, "", binDir, "cqrsflow/outbox-relay", "cqrsflow/projector")
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binDir
}

// start runs one binary until the test ends (SIGTERM, then SIGKILL).
func start(t *testing.T, name string, args []string, env []string, addr string) *binary.Process {
	t.Helper()
	bin := "outbox-relay"
	if strings.HasPrefix(name, "projector") {
		bin = "projector"
	}
	p, err := binary.Start(binary.Spec{Name: name, Bin: filepath.Join(bins(t), bin), Args: args, Env: env, Addr: addr,
		LogPath: filepath.Join(t.TempDir(), name+".log")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = p.Stop(20 * time.Second)
		if t.Failed() {
			t.Logf("%s log:\n%s", name, binary.Tail(p.LogPath, 30))
		}
	})
	if addr != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		if err := p.WaitReady(ctx, 60*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

// runToEnd runs one binary to its exit and fails the test unless it
// exits 0.
func runToEnd(t *testing.T, name string, args, env []string, timeout time.Duration) string {
	t.Helper()
	p := start(t, name, args, env, "")
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	err := testenv.Until(ctx, timeout, 100*time.Millisecond, name+" exits", func() (bool, error) {
		done, _ := p.Exited()
		return done, nil
	})
	if err != nil {
		t.Fatalf("%v\n%s", err, binary.Tail(p.LogPath, 20))
	}
	if _, werr := p.Exited(); werr != nil {
		t.Fatalf("%s: %v\n%s", name, werr, binary.Tail(p.LogPath, 20))
	}
	b, _ := os.ReadFile(p.LogPath)
	return string(b)
}

func kill9(t *testing.T, p *binary.Process) {
	t.Helper()
	if err := syscall.Kill(p.Pid(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = testenv.Until(ctx, 10*time.Second, 50*time.Millisecond, p.Name+" dead", func() (bool, error) {
		done, _ := p.Exited()
		return done, nil
	})
}

// appendProduct appends the next event of product id the way the api
// does (head row first, then the event and its outbox row): a
// ProductCreated at version 1, a ProductUpdated after.
const appendProduct = `WITH a AS (
	INSERT INTO aggregates (aggregate_type, aggregate_id, version) VALUES ('product', $1, 1)
	ON CONFLICT (aggregate_type, aggregate_id) DO UPDATE SET version = aggregates.version + 1, updated_at = clock_timestamp()
	RETURNING version
), e AS (
	INSERT INTO events (event_id, aggregate_type, aggregate_id, version, event_type, schema_version, payload, metadata, occurred_at)
	SELECT gen_random_uuid(), 'product', $1, a.version, CASE WHEN a.version = 1 THEN 'ProductCreated' ELSE 'ProductUpdated' END, 1,
	       jsonb_build_object('name', 'product ' || $1, 'description', 'version ' || a.version, 'price', 1.25, 'stock', a.version),
	       '{"correlation_id":"backfill-test"}'::jsonb, clock_timestamp()
	FROM a RETURNING *
)
INSERT INTO outbox (` + outbox.Columns + `) SELECT ` + outbox.FromEvents + ` FROM e ev
RETURNING (SELECT version FROM e)`

// productFold folds the product events of the event store as the
// projector does: through the products projection, which upcasts the
// stored v1 events.
func productFold(ctx context.Context, t *testing.T, pg *testenv.PG) map[string]*products.Doc {
	t.Helper()
	rows, err := pg.Pool.Query(ctx, `SELECT event_id::text, event_type, schema_version, aggregate_type, aggregate_id, version, occurred_at, recorded_at, payload
		FROM events WHERE aggregate_type = 'product' ORDER BY aggregate_id, version`)
	if err != nil {
		t.Fatal(err)
	}
	// Closed before a t.Fatal too: the pool's cleanup waits for the
	// connection the rows hold.
	defer rows.Close()
	docs := map[string]*products.Doc{}
	for rows.Next() {
		var e envelope.Envelope
		var payload []byte
		if err := rows.Scan(&e.EventID, &e.EventType, &e.SchemaVersion, &e.AggregateType, &e.AggregateID, &e.Version, &e.OccurredAt, &e.RecordedAt, &payload); err != nil {
			t.Fatal(err)
		}
		e.Payload = payload
		var cur any
		if d := docs[e.AggregateID]; d != nil {
			cur = d
		}
		d, err := products.Projection.Apply(cur, &e)
		if err != nil {
			t.Fatal(err)
		}
		docs[e.AggregateID] = d.(*products.Doc)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return docs
}

// indexEqualsFold returns "" when every document behind alias equals the
// event store's fold, else what differs.
func indexEqualsFold(ctx context.Context, es *elasticsearch.Client, alias string, want map[string]*products.Doc) string {
	ids := make([]string, 0, len(want))
	for id := range want {
		ids = append(ids, id)
	}
	hits, err := esindex.MGet(ctx, es, alias, ids)
	if err != nil {
		return err.Error()
	}
	for id, d := range want {
		h, ok := hits[id]
		if !ok {
			return id + " missing from " + alias
		}
		wb, _ := json.Marshal(d)
		var a, b any
		_ = json.Unmarshal(wb, &a)
		_ = json.Unmarshal(h.Source, &b)
		if fmt.Sprint(a) != fmt.Sprint(b) {
			return fmt.Sprintf("%s: index %s\nfold %s", id, h.Source, wb)
		}
	}
	return ""
}

// topicCheck is what consuming a topic to its end found.
type topicCheck struct {
	records, distinct, duplicates int
	violations                    []string // a key's first occurrence of a version not right after the previous
	partitions                    int
}

// checkTopic reads topic from the start to its end offsets and checks, per
// key in partition order, that the first occurrences of its versions are
// 1, 2, 3, … and that every event of want (aggregate id → last version) is
// there and nothing else (want nil: no check of the contents).
func checkTopic(t *testing.T, topic string, want map[string]int64) topicCheck {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(testenv.KafkaBrokers()...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, topic)
	if err != nil || ends.Error() != nil {
		t.Fatalf("end offsets of %s: %v %v", topic, err, ends.Error())
	}
	remaining := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			remaining[o.Partition] = o.Offset
		}
	})
	var c topicCheck
	c.partitions = len(ends[topic])
	type rec struct {
		p         int32
		off       int64
		key, id   string
		version   int64
		partition string
	}
	var recs []rec
	for len(remaining) > 0 && ctx.Err() == nil {
		fs := cl.PollFetches(ctx)
		fs.EachRecord(func(r *kgo.Record) {
			env, err := envelope.Decode(r.Value)
			if err != nil {
				t.Fatalf("%s/%d@%d: %v", r.Topic, r.Partition, r.Offset, err)
			}
			recs = append(recs, rec{p: r.Partition, off: r.Offset, key: string(r.Key), id: env.EventID, version: env.Version})
			if end, ok := remaining[r.Partition]; ok && r.Offset >= end-1 {
				delete(remaining, r.Partition)
			}
		})
	}
	if len(remaining) > 0 {
		t.Fatalf("%s: did not reach the end offsets", topic)
	}
	sort.Slice(recs, func(i, j int) bool {
		if recs[i].p != recs[j].p {
			return recs[i].p < recs[j].p
		}
		return recs[i].off < recs[j].off
	})
	seen, last, part := map[string]bool{}, map[string]int64{}, map[string]int32{}
	for _, r := range recs {
		c.records++
		if p, ok := part[r.key]; ok && p != r.p {
			c.violations = append(c.violations, fmt.Sprintf("key %s in partitions %d and %d", r.key, p, r.p))
		}
		part[r.key] = r.p
		if seen[r.id] {
			c.duplicates++
			continue
		}
		seen[r.id] = true
		c.distinct++
		if r.version != last[r.key]+1 {
			c.violations = append(c.violations, fmt.Sprintf("key %s: version %d after %d (%d@%d)", r.key, r.version, last[r.key], r.p, r.off))
		}
		last[r.key] = max(last[r.key], r.version)
	}
	for id, v := range want {
		if last[id] != v {
			t.Errorf("%s: aggregate %s last version %d, want %d", topic, id, last[id], v)
		}
	}
	if want != nil && len(last) != len(want) {
		t.Errorf("%s: %d aggregates, want %d", topic, len(last), len(want))
	}
	return c
}

// lastVersions is aggregate id → version of the product head rows.
func lastVersions(ctx context.Context, t *testing.T, pg *testenv.PG) map[string]int64 {
	t.Helper()
	rows, err := pg.Pool.Query(ctx, `SELECT aggregate_id, max(version) FROM events WHERE aggregate_type = 'product' GROUP BY aggregate_id`)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	var id string
	var v int64
	_, err = pgx.ForEachRow(rows, []any{&id, &v}, func() error { out[id] = v; return nil })
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func waitOutboxEmpty(ctx context.Context, t *testing.T, pg *testenv.PG, timeout time.Duration) {
	t.Helper()
	err := testenv.Until(ctx, timeout, 100*time.Millisecond, "outbox drained", func() (bool, error) {
		var n int64
		err := pg.Pool.QueryRow(ctx, `SELECT count(*) FROM outbox`).Scan(&n)
		return n == 0, err
	})
	if err != nil {
		t.Fatal(err)
	}
}

func deleteTopicsOnCleanup(t *testing.T, adm *kadm.Client, names ...string) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, _ = adm.DeleteTopics(ctx, names...)
	})
}
