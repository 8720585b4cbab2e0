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
	"github.com/twmb/franz-go/pkg/kmsg"

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

// A worker asked to stop while the broker no longer answers the group's
// requests (a paused or restarting Kafka) still stops within its
// ShutdownGrace plus the close bound: leaving the group must not hang
// forever. Fails when the close is unbounded (CloseAllowingRebalance).
func TestRunnerStopsWhenLeavingTheGroupHangs(t *testing.T) {
	const topic = "cf.product.events"
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, topic))
	if err != nil {
		t.Fatal(err)
	}
	brokers := c.ListenAddrs()
	store := &memStore{docs: map[string]esindex.Hit{}}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	m := NewMetrics(prometheus.NewRegistry())
	cfg := Config{Brokers: brokers, Group: "g", Topic: topic, Index: "i", BatchMaxRecords: 50, LagInterval: time.Hour,
		BackoffMin: time.Millisecond, BackoffMax: 10 * time.Millisecond, DLQPartitions: 1, SessionTimeout: 6 * time.Second,
		ShutdownGrace: time.Second}
	r, err := newRunner(cfg, products.Projection, store, m, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, gen := r.cl.GroupMetadata(); gen > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the worker never joined the group")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// From now on the broker swallows every group request.
	release := make(chan struct{})
	defer close(release)
	for _, key := range []kmsg.Key{kmsg.LeaveGroup, kmsg.JoinGroup, kmsg.SyncGroup, kmsg.Heartbeat, kmsg.OffsetCommit} {
		c.ControlKey(int16(key), func(kmsg.Request) (kmsg.Response, error, bool) {
			c.KeepControl()
			c.SleepControl(func() { <-release })
			return nil, nil, false
		})
	}
	stopAt := time.Now()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
		if d := time.Since(stopAt); d > cfg.ShutdownGrace+closeWait+15*time.Second {
			t.Fatalf("stopping took %s", d)
		}
	case <-time.After(cfg.ShutdownGrace + closeWait + 20*time.Second):
		t.Fatal("the worker did not stop while the broker swallowed its group requests")
	}
	go c.Close() // wakes the sleeping control functions
}

// A worker asked to stop while it still sets up its topics stops cleanly:
// the stop is not reported as a failure. Fails when Run returns the
// cancelled setup's error.
func TestRunnerStoppedDuringSetup(t *testing.T) {
	const topic = "cf.product.events"
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, topic))
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	defer func() { close(release); go c.Close() }()
	c.ControlKey(int16(kmsg.CreateTopics), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		select {
		case entered <- struct{}{}:
		default:
		}
		c.SleepControl(func() { <-release })
		return nil, nil, false
	})
	store := &memStore{docs: map[string]esindex.Hit{}}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg := Config{Brokers: c.ListenAddrs(), Group: "g", Topic: topic, Index: "i", BatchMaxRecords: 50, LagInterval: time.Hour,
		DLQPartitions: 1, SessionTimeout: 6 * time.Second, ShutdownGrace: time.Second}
	r, err := newRunner(cfg, products.Projection, store, NewMetrics(prometheus.NewRegistry()), log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	select {
	case <-entered:
	case <-time.After(20 * time.Second):
		t.Fatal("the worker never tried to create its DLQ topic")
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v, want a clean stop", err)
		}
	case <-time.After(closeWait + 20*time.Second):
		t.Fatal("the worker did not stop during setup")
	}
}
