//go:build integration

package main

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"cqrsflow/internal/envelope"
	"cqrsflow/internal/esindex"
	"cqrsflow/internal/testenv"
)

// The procedure of docs/operations.md ("Repartitioning an aggregate
// type"), step by step with the real binaries, while writes go on and a
// reader reads the products through the alias the whole time: products
// move from a 6-partition topic to a 12-partition one. Afterwards the new
// topic holds every product event, the first occurrences of each key in
// version order, the index (rebuilt from the new topic, alias swapped)
// equals the event store's fold, and no read failed.
func TestRepartitionUnderLoad(t *testing.T) {
	pg := testenv.Postgres(t)
	adm := testenv.KafkaAdmin(t)
	es := testenv.Elasticsearch(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	oldPrefix := strings.ReplaceAll(testenv.Name(t), "_", "-")
	newPrefix := oldPrefix + "-p12"
	oldTopic, newTopic := envelope.Topic(oldPrefix, "product"), envelope.Topic(newPrefix, "product")
	var cleanup []string
	for _, p := range []string{oldPrefix, newPrefix} {
		for _, a := range []string{"product", "order"} {
			cleanup = append(cleanup, envelope.Topic(p, a), envelope.DLQTopic(envelope.Topic(p, a)), envelope.Topic(p, a)+".quarantine")
		}
	}
	deleteTopicsOnCleanup(t, adm, cleanup...)
	indexPrefix := testenv.IndexPrefix(t) + "-"
	alias := esindex.AliasName(indexPrefix, "products")
	brokers := strings.Join(testenv.KafkaBrokers(), ",")
	relayEnv := func(addr string, more ...string) []string {
		return append([]string{"POSTGRES_URL=" + pg.URL, "KAFKA_BROKERS=" + brokers, "TOPIC_PREFIX=" + oldPrefix,
			"METRICS_ADDR=" + addr, "RELAY_ID=r-" + oldPrefix, "MIGRATE=false", "LOG_LEVEL=warn", "LEASE_TTL=3s"}, more...)
	}
	projEnv := func(addr, topicPrefix string) []string {
		return []string{"KAFKA_BROKERS=" + brokers, "ELASTICSEARCH_URL=" + testenv.ElasticsearchURL(), "TOPIC_PREFIX=" + topicPrefix,
			"PROJECTIONS=products", "INDEX_PREFIX=" + indexPrefix, "GROUP_PREFIX=g-" + oldPrefix, "METRICS_ADDR=" + addr,
			"LAG_INTERVAL=500ms", "LOG_LEVEL=warn"}
	}
	t.Cleanup(func() {
		cctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		_, _ = adm.DeleteGroups(cctx, "g-"+oldPrefix+"-products", "g-"+oldPrefix+"-products-v2")
	})

	began := time.Now()
	step := func(what string) { t.Logf("%6.1fs %s", time.Since(began).Seconds(), what) }
	// Before: products on a 6-partition topic, a projector on it.
	addr := testenv.FreeAddr(t)
	relay1 := start(t, "relay-1", nil, relayEnv(addr, "TOPIC_PARTITIONS=6"), addr)
	addr = testenv.FreeAddr(t)
	proj1 := start(t, "projector-1", nil, projEnv(addr, oldPrefix), addr)

	// A steady write load over 40 products until the end.
	ids := make([]string, 40)
	for i := range ids {
		ids[i] = fmt.Sprintf("prod-%02d", i)
		if _, err := pg.Pool.Exec(ctx, appendProduct, ids[i]); err != nil {
			t.Fatal(err)
		}
	}
	stopWrites := make(chan struct{})
	var writes atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stopWrites:
				return
			case <-time.After(20 * time.Millisecond):
			}
			if _, err := pg.Pool.Exec(ctx, appendProduct, ids[i%len(ids)]); err != nil {
				t.Errorf("append: %v", err)
				return
			}
			writes.Add(1)
		}
	}()
	if err := testenv.Until(ctx, 30*time.Second, 200*time.Millisecond, "40 products readable", func() (bool, error) {
		hits, err := esindex.MGet(ctx, es, alias, ids)
		return err == nil && len(hits) == len(ids), err
	}); err != nil {
		t.Fatal(err)
	}
	// A reader through the alias for the whole move: every read must
	// answer every product.
	var reads, failed atomic.Int64
	var lastFailure atomic.Value
	stopReads := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stopReads:
				return
			default:
			}
			hits, err := esindex.MGet(ctx, es, alias, ids)
			reads.Add(1)
			if err != nil || len(hits) != len(ids) {
				failed.Add(1)
				lastFailure.Store(fmt.Sprintf("%d of %d found, err %v", len(hits), len(ids), err))
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()

	kenv := []string{"POSTGRES_URL=" + pg.URL, "KAFKA_BROKERS=" + brokers, "TOPIC_PREFIX=" + newPrefix, "LOG_LEVEL=warn"}
	backfill := []string{"backfill", "--run", "repartition-product", "--aggregate-type", "product", "--partitions", "12", "--batch-size", "500"}
	// 1. The new topic, and the history up to now, while the relay goes on.
	step("reader started")
	runToEnd(t, "backfill-1", backfill, kenv, 60*time.Second)
	step("backfill pass 1 done")
	// 2. Cut-over: stop the relays (writes go on into the outbox), resume
	// the backfill up to everything committed, start the relays with the
	// type's new prefix.
	if err := relay1.Stop(20 * time.Second); err != nil {
		t.Fatal(err)
	}
	step("relays stopped")
	out := runToEnd(t, "backfill-2", backfill, kenv, 60*time.Second)
	step("backfill pass 2 done")
	if !strings.Contains(out, "done; ") {
		t.Fatalf("second pass:\n%s", out)
	}
	addr = testenv.FreeAddr(t)
	start(t, "relay-2", nil, relayEnv(addr, "TOPIC_PARTITIONS=12", "AGGREGATE_TOPIC_PREFIXES=product="+newPrefix), addr)
	step("relays publish to the new topic")
	// 3. The projector follows the new topic (its group starts there from
	// the earliest offset: what it applied already is a duplicate).
	if err := proj1.Stop(20 * time.Second); err != nil {
		t.Fatal(err)
	}
	addr = testenv.FreeAddr(t)
	start(t, "projector-2", nil, projEnv(addr, newPrefix), addr)
	step("projector on the new topic")
	// 4. Rebuild the read model from the new topic and swap the alias.
	out = runToEnd(t, "projector-rebuild", []string{"rebuild", "--projection", "products", "--version", "2"}, projEnv(testenv.FreeAddr(t), newPrefix), 90*time.Second)
	if !strings.Contains(out, "swapped") {
		t.Fatalf("rebuild output:\n%s", out)
	}
	step("rebuilt, alias swapped")
	time.Sleep(time.Second) // writes on the new topic after the swap
	close(stopWrites)
	close(stopReads)
	wg.Wait()
	waitOutboxEmpty(ctx, t, pg, 30*time.Second)

	// The new topic: every product event, in version order per key.
	c := checkTopic(t, newTopic, lastVersions(ctx, t, pg))
	if len(c.violations) > 0 {
		t.Fatalf("%d order violations on %s, e.g. %v", len(c.violations), newTopic, c.violations[:min(5, len(c.violations))])
	}
	if c.partitions != 12 {
		t.Fatalf("%s has %d partitions, want 12", newTopic, c.partitions)
	}
	var stored int64
	if err := pg.Pool.QueryRow(ctx, `SELECT count(*) FROM events WHERE aggregate_type = 'product'`).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if int64(c.distinct) != stored {
		t.Fatalf("%d distinct events on %s, %d in the event store", c.distinct, newTopic, stored)
	}
	// The read model, rebuilt from the new topic and fed by the projector
	// on it, equals the event store's fold.
	want := productFold(ctx, t, pg)
	var diff string
	if err := testenv.Until(ctx, 30*time.Second, 250*time.Millisecond, "index equals the fold", func() (bool, error) {
		diff = indexEqualsFold(ctx, es, alias, want)
		return diff == "", nil
	}); err != nil {
		t.Fatalf("%v: %s", err, diff)
	}
	targets, err := esindex.AliasTargets(ctx, es, alias)
	if err != nil || len(targets) != 1 || targets[0] != esindex.IndexName(indexPrefix, "products", 2) {
		t.Fatalf("alias %s → %v, %v; want the rebuilt index", alias, targets, err)
	}
	if n := failed.Load(); n > 0 {
		t.Fatalf("%d of %d reads failed during the move; last: %v", n, reads.Load(), lastFailure.Load())
	}
	// The old topic got nothing after the cut-over and can be retired.
	old := checkTopic(t, oldTopic, nil)
	t.Logf("%d writes during the move; new topic: %d records (%d duplicates) for %d events; old topic: %d records; %d reads, 0 failed",
		writes.Load(), c.records, c.duplicates, stored, old.records, reads.Load())
}
