package projector

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"cqrsflow/internal/envelope"
	"cqrsflow/internal/esindex"
	"cqrsflow/internal/projection/products"
)

// Consumer-runtime behaviour on kfake (an in-process Kafka): a second
// worker joining takes partitions from the first, which commits them in
// its revoke callback (and after every batch), so nothing is handled
// twice (the test fails when those commits are removed). After both stop
// (SIGTERM path: commit, leave) the group's committed offsets are at the
// end of every partition.
func TestRunnerRebalanceCommitsRevoked(t *testing.T) {
	const topic = "cf.product.events"
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(4, topic))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	brokers := c.ListenAddrs()
	store := &memStore{docs: map[string]esindex.Hit{}}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	cfg := Config{Brokers: brokers, Group: "g", Topic: topic, Index: "i", BatchMaxRecords: 50, LagInterval: 50 * time.Millisecond,
		BackoffMin: time.Millisecond, BackoffMax: 10 * time.Millisecond, DLQPartitions: 1, SessionTimeout: 6 * time.Second}

	prod, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic(topic))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	produce := func(from, to int) {
		var recs []*kgo.Record
		for i := from; i < to; i++ {
			id := fmt.Sprintf("p%d", i%40)
			v := int64(i/40 + 1)
			typ := products.Updated
			if v == 1 {
				typ = products.Created
			}
			e := envelope.Envelope{EventID: fmt.Sprint(i), EventType: typ, SchemaVersion: 1, AggregateType: "product", AggregateID: id,
				Version: v, OccurredAt: time.Now(), RecordedAt: time.Now(), Payload: json.RawMessage(`{"name":"n","description":"d","price":1,"stock":1}`)}
			b, _ := json.Marshal(e)
			recs = append(recs, &kgo.Record{Key: []byte(id), Value: b})
		}
		if err := prod.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	start := func() (func(), *Runner) {
		r, err := newRunner(cfg, products.Projection, store, m, log)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- r.Run(ctx) }()
		return func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("run: %v", err)
			}
		}, r
	}
	applied := func() float64 { return testutil.ToFloat64(m.Events.WithLabelValues("products", OutcomeApplied)) }
	wait := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	stopA, _ := start()
	produce(0, 400)
	wait("first worker applied 400", func() bool { return applied() == 400 })
	stopB, _ := start() // rebalance: A revokes some partitions (commit), B takes them
	time.Sleep(500 * time.Millisecond)
	produce(400, 800)
	wait("800 applied", func() bool { return applied() == 800 })
	noop := testutil.ToFloat64(m.Events.WithLabelValues("products", OutcomeDuplicate)) +
		testutil.ToFloat64(m.Events.WithLabelValues("products", OutcomeStale))
	if noop != 0 {
		t.Errorf("%v events handled twice across the rebalance, want 0 (revoked partitions committed)", noop)
	}
	stopB()
	stopA()
	for i := 0; i < 40; i++ {
		if v := store.docs[fmt.Sprintf("p%d", i)].Version; v != 20 {
			t.Errorf("p%d at v%d, want 20", i, v)
		}
	}
	adm, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close()
	lags, err := Lag(context.Background(), kadm.NewClient(adm), "g", topic)
	if err != nil {
		t.Fatal(err)
	}
	for p, l := range lags {
		if l != 0 {
			t.Errorf("partition %d: committed lag %d after shutdown, want 0", p, l)
		}
	}
}
