package relay

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"cqrsflow/internal/envelope"
)

// javaMurmur2 is Kafka's org.apache.kafka.common.utils.Utils.murmur2,
// transcribed with Java's signed 32-bit int arithmetic (>>> = unsigned
// shift), independent of franz-go's implementation.
func javaMurmur2(data []byte) int32 {
	length := int32(len(data))
	seed := int32(-1756908916) // 0x9747b28c
	const m = int32(0x5bd1e995)
	const r = 24
	h := seed ^ length
	length4 := length / 4
	for i := int32(0); i < length4; i++ {
		i4 := i * 4
		k := int32(data[i4]) + int32(data[i4+1])<<8 + int32(data[i4+2])<<16 + int32(data[i4+3])<<24
		k *= m
		k ^= int32(uint32(k) >> r)
		k *= m
		h *= m
		h ^= k
	}
	tail := length &^ 3
	switch length % 4 {
	case 3:
		h ^= int32(data[tail+2]) << 16
		fallthrough
	case 2:
		h ^= int32(data[tail+1]) << 8
		fallthrough
	case 1:
		h ^= int32(data[tail])
		h *= m
	}
	h ^= int32(uint32(h) >> 13)
	h *= m
	h ^= int32(uint32(h) >> 15)
	return h
}

// javaPartition is the Java producer's partition of a keyed record:
// Utils.toPositive(Utils.murmur2(key)) % numPartitions.
func javaPartition(key []byte, n int32) int32 { return (javaMurmur2(key) & 0x7fffffff) % n }

func TestJavaMurmur2KnownVectors(t *testing.T) {
	// Vectors from Kafka's UtilsTest.testMurmur2.
	cases := map[string]int32{
		"21":                         -973932308,
		"foobar":                     -790332482,
		"a-little-bit-long-string":   -985981536,
		"a-little-bit-longer-string": -1486304829,
		"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
		"abc": 479470107,
	}
	for in, want := range cases {
		if got := javaMurmur2([]byte(in)); got != want {
			t.Errorf("murmur2(%q) = %d, want %d", in, got, want)
		}
	}
}

// fakeKafka starts an in-process kfake cluster with the given topics.
func fakeKafka(t *testing.T, partitions int32, topics ...string) *kfake.Cluster {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.DefaultNumPartitions(int(partitions)), kfake.SeedTopics(partitions, topics...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func newProducer(t *testing.T, c *kfake.Cluster) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(ProducerOpts(c.ListenAddrs(), 0)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// produceOne produces rec through p, flushes (ProducerOpts flush
// manually) and returns it as acked.
func produceOne(ctx context.Context, p Producer, rec *kgo.Record) (*kgo.Record, error) {
	done := make(chan error, 1)
	p.Produce(ctx, rec, func(_ *kgo.Record, err error) { done <- err })
	if err := p.Flush(ctx); err != nil {
		return nil, err
	}
	return rec, <-done
}

// A producer made with ProducerOpts sends nothing until flushed: the
// relay's guarantee that a refused record takes the later ones of its
// partition with it rests on that (see ProducerOpts).
func TestProducerSendsOnlyWhenFlushed(t *testing.T) {
	topic := envelope.Topic("p", "order")
	c := fakeKafka(t, 1, topic)
	cl := newProducer(t, c)
	acked := make(chan error, 1)
	cl.Produce(context.Background(), &kgo.Record{Topic: topic, Key: []byte("k"), Value: []byte("{}")}, func(_ *kgo.Record, err error) { acked <- err })
	select {
	case err := <-acked:
		t.Fatalf("answered before a flush: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	if err := cl.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := <-acked; err != nil {
		t.Fatal(err)
	}
}

// The relay's producer puts a key on the partition the Java client would.
func TestProducerPartitionsLikeJavaClient(t *testing.T) {
	const parts = 12
	topic := envelope.Topic("p", "order")
	c := fakeKafka(t, parts, topic)
	cl := newProducer(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	keys := []string{"21", "foobar", "abc", "0b2f5a7e-3c1d-4e8f-9a6b-1c2d3e4f5a6b", "order-1", "order-2", "x"}
	for i := range 40 {
		keys = append(keys, fmt.Sprintf("%08x-aaaa-bbbb-cccc-%012d", i*7919, i))
	}
	seen := map[int32]bool{}
	for _, k := range keys {
		rec, err := produceOne(ctx, cl, &kgo.Record{Topic: topic, Key: []byte(k), Value: []byte("{}")})
		if err != nil {
			t.Fatal(err)
		}
		if want := javaPartition([]byte(k), parts); rec.Partition != want {
			t.Errorf("key %q: partition %d, Java client would use %d", k, rec.Partition, want)
		}
		seen[rec.Partition] = true
	}
	if len(seen) < 6 {
		t.Errorf("keys landed on only %d partitions; the check is too weak", len(seen))
	}
}

func mkRow(id int64, agg string, version int64) row {
	return row{ID: id, Row: envelope.Row{
		AggregateType: "order", AggregateID: agg, GlobalPosition: id,
		EventID: fmt.Sprintf("00000000-0000-0000-0000-%012d", id), EventType: "OrderCreated", SchemaVersion: 1,
		Version: version, Payload: []byte(`{"quantity":1}`), Metadata: []byte(`{"correlation_id":"c1"}`),
		OccurredAt: time.Unix(1700000000, 0), RecordedAt: time.Unix(1700000001, 0),
	}}
}

func TestDeletableStopsAtFirstFailurePerAggregate(t *testing.T) {
	rows := []row{mkRow(1, "A", 1), mkRow(2, "B", 1), mkRow(3, "A", 2), mkRow(4, "B", 2), mkRow(5, "A", 3), mkRow(6, "C", 1), mkRow(7, "C", 2)}
	boom := errors.New("boom")
	errs := []error{nil, nil, boom, nil, nil, boom, nil}
	got := deletable(rows, errs)
	want := []int64{1, 2, 4} // A3 acked after A2 failed stays; C2 after C1 failed stays
	if !slices.Equal(got, want) {
		t.Fatalf("deletable = %v, want %v", got, want)
	}
	if got := deletable(rows, make([]error, len(rows))); len(got) != len(rows) {
		t.Fatalf("all acked: deletable = %v", got)
	}
}

func TestRecordEnvelopeAndHeaders(t *testing.T) {
	r := mkRow(42, "agg-1", 3)
	rec, err := record(envelope.Topic("pre", r.AggregateType), &r)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Topic != "pre.order.events" || string(rec.Key) != "agg-1" {
		t.Fatalf("topic/key = %s/%s", rec.Topic, rec.Key)
	}
	env, err := envelope.Decode(rec.Value)
	if err != nil {
		t.Fatal(err)
	}
	if env.Version != 3 || env.GlobalPosition != 42 || env.Metadata.CorrelationID != "c1" || env.EventID != r.EventID {
		t.Fatalf("envelope = %+v", env)
	}
	h := map[string]string{}
	for _, x := range rec.Headers {
		h[x.Key] = string(x.Value)
	}
	want := map[string]string{"event_type": "OrderCreated", "schema_version": "1", "event_id": r.EventID, "content-type": "application/json"}
	for k, v := range want {
		if h[k] != v {
			t.Errorf("header %s = %q, want %q", k, h[k], v)
		}
	}
	bad := mkRow(43, "agg-1", 1)
	bad.Metadata = []byte(`[1]`)
	if _, err := record(envelope.Topic("pre", bad.AggregateType), &bad); err == nil {
		t.Fatal("metadata that is not an object: want error")
	}
	for _, payload := range []string{`[1]`, `{"price": 1.5,`, `{} {}`, ``} {
		bad = mkRow(44, "agg-1", 1)
		bad.Payload = []byte(payload)
		if _, err := record(envelope.Topic("p", bad.AggregateType), &bad); err == nil {
			t.Errorf("record with payload %q: want error", payload)
		}
	}
}

// A non-retriable rejection of one produce batch (kfake answers
// INVALID_RECORD) fails that batch only: franz-go still delivers later
// batches of the same partition, so an aggregate can have v1..v13 failed
// and v14..v20 acked. The relay must then delete only the acked prefix of
// each aggregate (here: nothing of A) and republish the rest in order, so
// nothing is lost and the retry carries the aggregate's versions
// contiguously from the first failed one.
func TestPublishPartialFailureKeepsKeyOrder(t *testing.T) {
	topic := envelope.Topic("p", "order")
	c := fakeKafka(t, 2, topic)
	// Pick two aggregates on different partitions.
	a, b := "", ""
	for i := 0; a == "" || b == ""; i++ {
		k := fmt.Sprintf("agg-%d", i)
		if javaPartition([]byte(k), 2) == 0 && a == "" {
			a = k
		} else if javaPartition([]byte(k), 2) == 1 && b == "" {
			b = k
		}
	}
	// Fail partition 0 in the first produce request that carries it.
	failed := false
	c.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		pr := req.(*kmsg.ProduceRequest)
		if failed {
			return nil, nil, false
		}
		for _, tp := range pr.Topics {
			for _, p := range tp.Partitions {
				if p.Partition == 0 {
					failed = true
					resp := pr.ResponseKind().(*kmsg.ProduceResponse)
					for _, tp2 := range pr.Topics {
						rt := kmsg.NewProduceResponseTopic()
						rt.Topic = tp2.Topic
						rt.TopicID = tp2.TopicID
						for _, p2 := range tp2.Partitions {
							rp := kmsg.NewProduceResponseTopicPartition()
							rp.Partition = p2.Partition
							rp.ErrorCode = kerr.InvalidRecord.Code
							rt.Partitions = append(rt.Partitions, rp)
						}
						resp.Topics = append(resp.Topics, rt)
					}
					return resp, nil, true
				}
			}
		}
		return nil, nil, false
	})
	cl := newProducer(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	var rows []row
	for v := int64(1); v <= 20; v++ {
		rows = append(rows, mkRow(2*v-1, a, v), mkRow(2*v, b, v))
	}
	errs := make([]error, len(rows))
	publish(ctx, cl, prefixTopics("p", nil), rows, errs)
	nFailA := 0
	for i := range rows {
		if errs[i] != nil && rows[i].AggregateID == a {
			nFailA++
		}
	}
	if nFailA == 0 {
		t.Fatal("injected failure did not fail any record of aggregate A; the test proves nothing")
	}
	ids := deletable(rows, errs)
	del := map[int64]bool{}
	for _, id := range ids {
		del[id] = true
	}
	// A's deleted rows are exactly a prefix of A's versions.
	prefix := true
	for i := range rows {
		if rows[i].AggregateID != a {
			continue
		}
		if !del[rows[i].ID] {
			prefix = false
		} else if !prefix {
			t.Fatalf("A v%d deleted after an undeleted earlier version", rows[i].Version)
		}
	}
	// Retry of what was not deleted succeeds completely, in order.
	var rest []row
	for _, r := range rows {
		if !del[r.ID] {
			rest = append(rest, r)
		}
	}
	errs2 := make([]error, len(rest))
	publish(ctx, cl, prefixTopics("p", nil), rest, errs2)
	for i, err := range errs2 {
		if err != nil {
			t.Fatalf("retry of %s v%d: %v", rest[i].AggregateID, rest[i].Version, err)
		}
	}
	// The retry carries every not-deleted version of each aggregate,
	// contiguous and in order from its first failed version.
	for _, agg := range []string{a, b} {
		var vs []int64
		for _, r := range rest {
			if r.AggregateID == agg {
				vs = append(vs, r.Version)
			}
		}
		for i := 1; i < len(vs); i++ {
			if vs[i] != vs[i-1]+1 {
				t.Fatalf("%s: retried versions %v not contiguous", agg, vs)
			}
		}
		if len(vs) > 0 && vs[len(vs)-1] != 20 {
			t.Fatalf("%s: retried versions %v do not end at 20", agg, vs)
		}
		// deleted + retried = all 20 versions: nothing lost.
		n := 0
		for _, r := range rows {
			if r.AggregateID == agg && del[r.ID] {
				n++
			}
		}
		if n+len(vs) != 20 {
			t.Fatalf("%s: %d deleted + %d retried != 20", agg, n, len(vs))
		}
	}
	// Everything is on Kafka afterwards.
	cons, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	seen := map[string]bool{}
	for len(seen) < len(rows) && ctx.Err() == nil {
		cons.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
			env, err := envelope.Decode(r.Value)
			if err != nil {
				t.Error(err)
				return
			}
			seen[env.EventID] = true
		})
	}
	if len(seen) != len(rows) {
		t.Fatalf("%d distinct events on Kafka, want %d", len(seen), len(rows))
	}
}

func BenchmarkRecord(b *testing.B) {
	r := mkRow(1, "0b2f5a7e-3c1d-4e8f-9a6b-1c2d3e4f5a6b", 3)
	r.Payload = []byte(`{"name": "p-1", "description": "` + strings.Repeat("x", 230) + `", "price": 19.99, "stock": 5}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := record(envelope.Topic("cqrsflow", r.AggregateType), &r); err != nil {
			b.Fatal(err)
		}
	}
}

// heldProducer keeps every promise until released: a broker that holds
// buffered records (restarting) and never answers.
type heldProducer struct {
	mu       sync.Mutex
	promises []func()
}

func (h *heldProducer) Produce(_ context.Context, r *kgo.Record, promise func(*kgo.Record, error)) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.promises = append(h.promises, func() { promise(r, nil) })
}

// Flush waits, like franz-go's, until every record is answered or ctx ends.
func (h *heldProducer) Flush(ctx context.Context) error {
	<-ctx.Done()
	return ctx.Err()
}

// When the batch's context ends (the shutdown grace ran out), publish stops
// waiting for acknowledgements a silent broker holds: every unacked record
// counts as failed (its row stays in the outbox), and promises that arrive
// later change nothing (run with -race).
func TestPublishStopsWaitingWhenTheContextEnds(t *testing.T) {
	rows := []row{mkRow(1, "A", 1), mkRow(2, "B", 1), mkRow(3, "A", 2)}
	errs := make([]error, len(rows))
	p := &heldProducer{}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, ackedAt := publish(ctx, p, prefixTopics("p", nil), rows, errs)
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("publish returned after %s", d)
	}
	for i, err := range errs {
		if !errors.Is(err, errAbandoned) || !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("row %d: %v, want errAbandoned wrapping the context's error", i, err)
		}
	}
	if ids := deletable(rows, errs); len(ids) != 0 {
		t.Errorf("rows %v deletable after an abandoned wait", ids)
	}
	p.mu.Lock()
	for _, ack := range p.promises {
		ack() // late acknowledgements
	}
	p.mu.Unlock()
	for i := range rows {
		if !errors.Is(errs[i], errAbandoned) || !ackedAt[i].IsZero() {
			t.Errorf("row %d changed by a late promise: %v, %v", i, errs[i], ackedAt[i])
		}
	}
}

func TestPrefixTopics(t *testing.T) {
	topicOf := prefixTopics("cqrsflow", map[string]string{"product": "cqrsflow-p12"})
	if got := topicOf("product"); got != "cqrsflow-p12.product.events" {
		t.Errorf("product → %s", got)
	}
	if got := topicOf("order"); got != "cqrsflow.order.events" {
		t.Errorf("order → %s", got)
	}
}

func TestBackfillSelectionKey(t *testing.T) {
	a := BackfillSelection{AggregateType: "product", AggregateIDs: []string{"b", "a", "b"}, FromPosition: 7}
	b := BackfillSelection{AggregateType: "product", AggregateIDs: []string{"a", "b"}, FromPosition: 7}
	if a.key() != b.key() {
		t.Fatalf("the same selection has two keys: %q, %q", a.key(), b.key())
	}
	for _, other := range []BackfillSelection{
		{AggregateType: "product", AggregateIDs: []string{"a"}, FromPosition: 7},
		{AggregateType: "product", AggregateIDs: []string{"a", "b"}, FromPosition: 8},
		{AggregateType: "product", AggregateIDs: []string{"a", "b"}, FromPosition: 7, FromTime: time.Unix(1, 0)},
		{AggregateType: "product", AggregateIDs: []string{"a,b"}, FromPosition: 7},
	} {
		if other.key() == a.key() {
			t.Errorf("%+v has the key of %+v", other, a)
		}
	}
}

// A backfill without a run, a topic or an aggregate type, or with a
// negative position, is refused before it touches anything.
func TestBackfillRefusesAnIncompleteSelection(t *testing.T) {
	ok := BackfillOptions{Run: "r", Topic: "t", Selection: BackfillSelection{AggregateType: "product"}}
	for _, mut := range []func(*BackfillOptions){
		func(o *BackfillOptions) { o.Run = "" },
		func(o *BackfillOptions) { o.Topic = "" },
		func(o *BackfillOptions) { o.Selection.AggregateType = "" },
		func(o *BackfillOptions) { o.Selection.FromPosition = -1 },
	} {
		o := ok
		mut(&o)
		if _, err := Backfill(context.Background(), nil, nil, nil, o, nil); !errors.Is(err, ErrConfig) {
			t.Errorf("%+v: err = %v, want ErrConfig", o, err)
		}
	}
}
