//go:build integration

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kgo"

	"cqrsflow/internal/envelope"
	"cqrsflow/internal/eventstore"
	"cqrsflow/internal/testenv"
)

// TestPublishesEveryRowInOrderAndEmptiesTheOutbox runs the floor on the
// real stack: rows appended through the event store (which notifies) all
// reach their type's topic, each aggregate's in version order, with the
// payload as the value, and the outbox is left empty. Batches of 7 make
// the drain take several full batches in a row.
func TestPublishesEveryRowInOrderAndEmptiesTheOutbox(t *testing.T) {
	pg := testenv.Postgres(t)
	adm := testenv.KafkaAdmin(t)
	prefix := "rawrelay-" + testenv.RandomHex(4)
	types := []string{"product", "order"}
	for _, typ := range types {
		testenv.CreateTopic(t, adm, envelope.Topic(prefix, typ), 3)
	}
	brokers := testenv.KafkaBrokers()
	cfg, err := parse([]string{"-addr", testenv.FreeAddr(t), "-postgres-url", pg.URL, "-brokers", strings.Join(brokers, ","),
		"-topic-prefix", prefix, "-linger", "10ms", "-batch", "7", "-pprof"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- serve(ctx, cfg) }()

	store := eventstore.New(pg.Pool)
	defer store.Close()
	const aggs, versions = 6, 10
	ids := make([]string, aggs)
	for i := range ids {
		ids[i] = uuid.NewString()
	}
	for v := 1; v <= versions; v++ {
		for i, id := range ids {
			payload := fmt.Appendf(nil, `{"agg":%d,"v":%d}`, i, v)
			if _, err := store.Append(ctx, types[i%2], id, int64(v-1), []eventstore.NewEvent{{Type: "ProductUpdated", SchemaVersion: 1, Payload: payload}}); err != nil {
				t.Fatal(err)
			}
		}
	}
	deadline := time.Now().Add(time.Minute)
	for {
		var left int
		if err := pg.Pool.QueryRow(ctx, `SELECT count(*) FROM outbox`).Scan(&left); err != nil {
			t.Fatal(err)
		}
		if left == 0 {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("rawrelay stopped with %d rows left: %v", left, err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d outbox rows left after a minute", left)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for path, want := range map[string]int{"/readyz": 200, "/debug/pprof/": 200, "/metrics": 404} {
		res, err := http.Get("http://" + cfg.addr + path)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != want {
			t.Errorf("GET %s: %d, want %d", path, res.StatusCode, want)
		}
	}
	cancel()
	if err := <-done; err != nil && ctx.Err() == nil {
		t.Fatalf("serve: %v", err)
	}

	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(envelope.Topic(prefix, "product"), envelope.Topic(prefix, "order")),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	rctx, rcancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer rcancel()
	next := map[string]int{} // aggregate id → next version expected
	got := 0
	for got < aggs*versions && rctx.Err() == nil {
		fs := cl.PollFetches(rctx)
		fs.EachRecord(func(r *kgo.Record) {
			var p struct{ Agg, V int }
			if err := json.Unmarshal(r.Value, &p); err != nil {
				t.Fatalf("value %q: %v", r.Value, err)
			}
			key := string(r.Key)
			if key != ids[p.Agg] || r.Topic != envelope.Topic(prefix, types[p.Agg%2]) {
				t.Errorf("record %s key %s topic %s: want key %s on %s", r.Value, key, r.Topic, ids[p.Agg], types[p.Agg%2])
			}
			if next[key] == 0 {
				next[key] = 1
			}
			if p.V != next[key] {
				t.Errorf("aggregate %d: version %d after %d", p.Agg, p.V, next[key]-1)
			}
			next[key] = p.V + 1
			got++
		})
	}
	if got != aggs*versions {
		t.Fatalf("read %d records, want %d", got, aggs*versions)
	}
}
