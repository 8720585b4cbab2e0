//go:build integration

package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"cqrsflow/internal/envelope"
	"cqrsflow/internal/esindex"
	"cqrsflow/internal/testenv"
)

// The backfill binary killed with SIGKILL in the middle of its run and
// started again finishes without a gap: every event on the topic, the
// first occurrences of each key in version order, and no more copies
// than the batches in flight when it died.
func TestBackfillBinaryKilledAndResumed(t *testing.T) {
	pg := testenv.Postgres(t)
	adm := testenv.KafkaAdmin(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	prefix := strings.ReplaceAll(testenv.Name(t), "_", "-")
	topic := envelope.Topic(prefix, "product")
	deleteTopicsOnCleanup(t, adm, topic)
	// 6 000 events of 200 products, written straight into the table.
	if _, err := pg.Pool.Exec(ctx, `INSERT INTO events (event_id, aggregate_type, aggregate_id, version, event_type, schema_version, payload, occurred_at)
		SELECT gen_random_uuid(), 'product', 'p-' || (g % 200), (g / 200) + 1, 'ProductUpdated', 1,
		       jsonb_build_object('name', 'n', 'description', repeat('x', 100), 'price', 1, 'stock', g), clock_timestamp()
		FROM generate_series(0, 5999) g ORDER BY g`); err != nil {
		t.Fatal(err)
	}
	want := lastVersions(ctx, t, pg)
	const batch = 150
	args := []string{"backfill", "--run", "killed", "--aggregate-type", "product", "--batch-size", strconv.Itoa(batch), "--partitions", "6"}
	maddr := testenv.FreeAddr(t)
	env := []string{"POSTGRES_URL=" + pg.URL, "KAFKA_BROKERS=" + strings.Join(testenv.KafkaBrokers(), ","), "TOPIC_PREFIX=" + prefix, "LOG_LEVEL=warn",
		"BACKFILL_METRICS_ADDR=" + maddr}

	for i := range 2 { // killed twice
		p := start(t, "backfill-killed", args, env, "")
		var pos0 int64
		_ = pg.Pool.QueryRow(ctx, `SELECT coalesce((SELECT position FROM backfill_progress WHERE run = 'killed'), 0)`).Scan(&pos0)
		err := p.Until(ctx, 40*time.Second, "backfill progress", func() (bool, error) {
			var pos int64
			err := pg.Pool.QueryRow(ctx, `SELECT coalesce((SELECT position FROM backfill_progress WHERE run = 'killed'), 0)`).Scan(&pos)
			return pos > pos0+batch, err
		})
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 { // its progress metrics while it runs
			res, err := http.Get("http://" + maddr + "/metrics")
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(res.Body)
			res.Body.Close()
			for _, m := range []string{"cqrsflow_backfill_position ", "cqrsflow_backfill_target_position 6000", `cqrsflow_backfill_published_total{topic="` + topic + `"}`} {
				if !strings.Contains(string(b), m) {
					t.Errorf("/metrics has no %q:\n%s", m, b)
				}
			}
		}
		kill9(t, p)
		var pos int64
		var finished bool
		if err := pg.Pool.QueryRow(ctx, `SELECT position, finished_at IS NOT NULL FROM backfill_progress WHERE run = 'killed'`).Scan(&pos, &finished); err != nil {
			t.Fatal(err)
		}
		if finished {
			t.Fatalf("kill %d: the run had finished already (position %d); the test interrupts nothing", i, pos)
		}
		t.Logf("killed at position %d", pos)
	}
	out := runToEnd(t, "backfill-resumed", args, env, 60*time.Second)
	if !strings.Contains(out, "done; ") {
		t.Fatalf("resumed run's output:\n%s", out)
	}
	c := checkTopic(t, topic, want)
	if len(c.violations) > 0 {
		t.Fatalf("%d order violations, e.g. %v", len(c.violations), c.violations[:min(5, len(c.violations))])
	}
	if c.distinct != 6000 || c.partitions != 6 {
		t.Fatalf("%d distinct events on %d partitions, want 6000 on 6", c.distinct, c.partitions)
	}
	// At most the batch in flight at each kill: one batch is produced at a
	// time and its position recorded before the next is read.
	if c.duplicates > 2*batch {
		t.Fatalf("%d duplicates: the resumed run started far below where it was killed", c.duplicates)
	}
	t.Logf("%d records, %d duplicates", c.records, c.duplicates)
}

// A topic deleted, backfilled into a topic of the same name, and the
// projection rebuilt from it: the index equals the fold of the event
// store for every aggregate.
func TestBackfillDeletedTopicThenRebuild(t *testing.T) {
	pg := testenv.Postgres(t)
	adm := testenv.KafkaAdmin(t)
	es := testenv.Elasticsearch(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	prefix := strings.ReplaceAll(testenv.Name(t), "_", "-")
	indexPrefix := testenv.IndexPrefix(t) + "-"
	topic := envelope.Topic(prefix, "product")
	deleteTopicsOnCleanup(t, adm, topic, envelope.DLQTopic(topic), envelope.Topic(prefix, "order"), envelope.DLQTopic(envelope.Topic(prefix, "order")))
	brokers := strings.Join(testenv.KafkaBrokers(), ",")
	relayAddr := testenv.FreeAddr(t)
	relayEnv := []string{"POSTGRES_URL=" + pg.URL, "KAFKA_BROKERS=" + brokers, "TOPIC_PREFIX=" + prefix, "TOPIC_PARTITIONS=3",
		"METRICS_ADDR=" + relayAddr, "RELAY_ID=r-" + prefix, "MIGRATE=false", "LOG_LEVEL=warn"}
	relay := start(t, "relay", nil, relayEnv, relayAddr)
	for i := range 400 {
		if _, err := pg.Pool.Exec(ctx, appendProduct, fmt.Sprintf("p-%d", i%50)); err != nil {
			t.Fatal(err)
		}
	}
	waitOutboxEmpty(ctx, t, pg, 30*time.Second)
	if err := relay.Stop(20 * time.Second); err != nil {
		t.Fatal(err)
	}
	// The topic is lost.
	if _, err := adm.DeleteTopics(ctx, topic); err != nil {
		t.Fatal(err)
	}
	if err := testenv.Until(ctx, 30*time.Second, 200*time.Millisecond, "topic deleted", func() (bool, error) {
		d, err := adm.ListTopics(ctx, topic)
		return err == nil && !d.Has(topic), err
	}); err != nil {
		t.Fatal(err)
	}
	kenv := []string{"POSTGRES_URL=" + pg.URL, "KAFKA_BROKERS=" + brokers, "TOPIC_PREFIX=" + prefix, "LOG_LEVEL=warn"}
	// Without --partitions a missing topic is refused (exit 2), not created
	// by the broker's defaults.
	code, _, stderr := runBackfillCLI(t, kenv, "--run", "refill", "--aggregate-type", "product")
	if code != 2 || !strings.Contains(stderr, "does not exist") {
		t.Fatalf("backfill to a missing topic: exit %d, %s", code, stderr)
	}
	var out string
	if err := testenv.Until(ctx, 30*time.Second, 500*time.Millisecond, "topic re-created by backfill", func() (bool, error) {
		c, o, e := runBackfillCLI(t, kenv, "--run", "refill", "--aggregate-type", "product", "--partitions", "3")
		out = o + e
		return c == 0, nil // a topic being deleted cannot be created yet
	}); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	// An existing topic of another size than --partitions asks is refused.
	if code, _, stderr := runBackfillCLI(t, kenv, "--run", "refill", "--aggregate-type", "product", "--partitions", "4"); code != 2 || !strings.Contains(stderr, "exists with 3 partitions") {
		t.Fatalf("backfill with --partitions 4 to a topic of 3: exit %d, %s", code, stderr)
	}
	want := productFold(ctx, t, pg)
	c := checkTopic(t, topic, lastVersions(ctx, t, pg))
	if len(c.violations) > 0 || c.distinct != 400 || c.duplicates != 0 {
		t.Fatalf("backfilled topic: %+v", c)
	}
	out = runToEnd(t, "projector-rebuild", []string{"rebuild", "--projection", "products", "--version", "2"}, []string{
		"KAFKA_BROKERS=" + brokers, "ELASTICSEARCH_URL=" + testenv.ElasticsearchURL(), "TOPIC_PREFIX=" + prefix,
		"INDEX_PREFIX=" + indexPrefix, "GROUP_PREFIX=g-" + prefix, "LOG_LEVEL=warn"}, 60*time.Second)
	if !strings.Contains(out, "swapped") {
		t.Fatalf("rebuild output:\n%s", out)
	}
	alias := esindex.AliasName(indexPrefix, "products")
	if diff := indexEqualsFold(ctx, es, alias, want); diff != "" {
		t.Fatalf("index after the rebuild from the backfilled topic differs from the event store: %s", diff)
	}
	if len(want) != 50 {
		t.Fatalf("%d products in the event store, want 50", len(want))
	}
	t.Logf("%d products, index equals the fold", len(want))
}

// runBackfillCLI runs `outbox-relay backfill` in process with env set.
func runBackfillCLI(t *testing.T, env []string, args ...string) (int, string, string) {
	t.Helper()
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	var stdout, stderr bytes.Buffer
	code := program.Run(context.Background(), append([]string{"backfill"}, args...), &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}
