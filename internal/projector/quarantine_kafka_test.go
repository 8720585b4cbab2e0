package projector

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"cqrsflow/internal/projection/products"
)

// The quarantine topic on kfake: entries a worker writes are known to a
// worker started later once it has read the topic to its end (a restart,
// a new owner after a rebalance); a release written by `dlq` removes the
// entry from every follower, calls back for the cache and counts a skip;
// readQuarantine (the admin's view) agrees.
func TestKafkaQuarantineFollowsTheTopic(t *testing.T) {
	const topic = "cf.product.events"
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, topic))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	brokers := c.ListenAddrs()
	prod, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	adm := kadm.NewClient(prod)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := ensureQuarantineTopic(ctx, adm, QuarantineTopic(topic), log); err != nil {
		t.Fatal(err)
	}
	follow := func() (*kafkaQuarantine, prometheus.Gauge) {
		g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "q"})
		q, err := newKafkaQuarantine(prod, []kgo.Opt{kgo.SeedBrokers(brokers...)}, QuarantineTopic(topic), "products", g, log)
		if err != nil {
			t.Fatal(err)
		}
		qctx, stop := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); q.run(qctx) }()
		t.Cleanup(func() { stop(); <-done })
		return q, g
	}
	first, _ := follow()
	entry := func(id string, v int64) QuarantineEntry {
		return QuarantineEntry{Projection: "products", AggregateID: id, BlockedVersion: v, Reason: ReasonUnprojectable,
			Topic: topic, Partition: 0, Offset: 10 * v, Since: time.Now().UTC()}
	}
	if err := first.Put(ctx, []QuarantineEntry{entry("a", 2), entry("b", 3)}); err != nil {
		t.Fatal(err)
	}
	// Another projection's entry on the same topic is not ours.
	other, _ := json.Marshal(QuarantineEntry{Projection: "other", AggregateID: "c", BlockedVersion: 1})
	if err := prod.ProduceSync(ctx, &kgo.Record{Topic: QuarantineTopic(topic), Key: quarantineKey("other", "c"), Value: other}).FirstErr(); err != nil {
		t.Fatal(err)
	}

	second, gauge := follow()
	var released, skipped atomic.Int32
	second.onRelease = func(string) { released.Add(1) }
	second.onSkip = func(e QuarantineEntry) {
		if e.AggregateID == "a" && e.SkippedVersion == 2 {
			skipped.Add(1)
		}
	}
	if err := second.caughtUp(ctx); err != nil {
		t.Fatal(err)
	}
	got := second.Lookup([]string{"a", "b", "c"})
	if len(got) != 2 || got["a"].BlockedVersion != 2 || got["b"].BlockedVersion != 3 || testutil.ToFloat64(gauge) != 2 {
		t.Fatalf("after catching up: %+v, gauge %v; want a@2 and b@3", got, testutil.ToFloat64(gauge))
	}

	a := &DLQAdmin{proj: products.Projection, topic: topic, conn: []kgo.Opt{kgo.SeedBrokers(brokers...)}, cl: prod, adm: adm, log: log}
	if err := a.release(ctx, got["a"], 2); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(second.Lookup([]string{"a"})) != 0 || len(first.Lookup([]string{"a"})) != 0 || skipped.Load() != 1 || released.Load() != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("release not followed: second %v, first %v, skipped %d, released %d",
				second.Lookup([]string{"a"}), first.Lookup([]string{"a"}), skipped.Load(), released.Load())
		}
		time.Sleep(20 * time.Millisecond)
	}
	view, err := readQuarantine(ctx, []kgo.Opt{kgo.SeedBrokers(brokers...)}, adm, topic, "products")
	if err != nil {
		t.Fatal(err)
	}
	if len(view) != 1 || view["b"].BlockedVersion != 3 {
		t.Errorf("readQuarantine = %+v, want only b", view)
	}
}

// The output of the dlq commands never prints an untrusted id raw, and
// --json is valid JSON.
func TestDLQOutput(t *testing.T) {
	hostile := "id\x1b[31m\twith\ncontrol" + strings.Repeat("x", 600)
	l := &DLQListing{Projection: "products", Scanned: 2,
		Quarantined: []QuarantineEntry{{AggregateID: hostile, BlockedVersion: 2, Reason: ReasonUnprojectable, Offset: 7}},
		Records: []DLQRecord{{Status: StatusPending, ReasonCode: ReasonUnprojectable, AggregateID: hostile, Version: 2, Reason: "bad\nline", Copies: 1},
			{Status: StatusInvalid, ReasonCode: ReasonInvalidEnvelope, Copies: 1}}}
	var out bytes.Buffer
	if err := WriteListing(&out, l, false, 1); err != nil {
		t.Fatal(err)
	}
	s := out.String()
	if strings.Contains(s, "\x1b") || strings.Contains(s, "with\ncontrol") || !strings.Contains(s, "1 more") {
		t.Errorf("table output:\n%s", s)
	}
	out.Reset()
	if err := WriteListing(&out, l, true, 1); err != nil {
		t.Fatal(err)
	}
	var back DLQListing
	if err := json.Unmarshal(out.Bytes(), &back); err != nil || len(back.Records) != 2 || back.Records[0].AggregateID != hostile {
		t.Errorf("--json output does not round-trip (%v): %s", err, out.String())
	}
	out.Reset()
	if err := WriteRecords(&out, []DLQRecord{{AggregateID: hostile, Raw: "\xff\x00", Headers: map[string]string{"k": "v\x1b"}}}, false); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out.String(), "\x1b") || strings.Contains(out.String(), "\x00") {
		t.Errorf("show output carries control bytes:\n%q", out.String())
	}
}
