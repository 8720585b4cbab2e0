package relay

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"cqrsflow/internal/envelope"
)

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want failure
	}{
		{"too large, wrapped by franz-go", fmt.Errorf("%w (uncompressed_bytes=9000)", kerr.MessageTooLarge), failure{ofRecord, "MESSAGE_TOO_LARGE"}},
		{"record list too large", kerr.RecordListTooLarge, failure{ofRecord, "RECORD_LIST_TOO_LARGE"}},
		{"invalid record", kerr.InvalidRecord, failure{ofRecord, "INVALID_RECORD"}},
		{"corrupt message (Kafka: retriable; franz-go: not retried)", kerr.CorruptMessage, failure{ofRecord, "CORRUPT_MESSAGE"}},
		{"policy violation", kerr.PolicyViolation, failure{ofRecord, "POLICY_VIOLATION"}},
		{"topic not authorized", kerr.TopicAuthorizationFailed, failure{ofTopic, "TOPIC_AUTHORIZATION_FAILED"}},
		{"topic missing (after franz-go's metadata retries)", kerr.UnknownTopicOrPartition, failure{ofTopic, "UNKNOWN_TOPIC_OR_PARTITION"}},
		{"invalid topic", kerr.InvalidTopicException, failure{ofTopic, "INVALID_TOPIC_EXCEPTION"}},
		{"envelope", envelopeErr(errors.New("payload is not a JSON object")), failure{ofRecord, reasonEnvelope}},
		{"other non-retriable Kafka error", kerr.UnknownServerError, failure{ofRecord, reasonOther}},
		{"cluster authorization: every record alike", kerr.ClusterAuthorizationFailed, failure{scope: transient}},
		{"producer fenced: the producer's problem", kerr.ProducerFenced, failure{scope: transient}},
		{"not leader", kerr.NotLeaderForPartition, failure{scope: transient}},
		{"request timed out", kerr.RequestTimedOut, failure{scope: transient}},
		{"delivery timeout", kgo.ErrRecordTimeout, failure{scope: transient}},
		{"context", context.DeadlineExceeded, failure{scope: transient}},
		{"connection", errors.New("dial tcp 127.0.0.1:19092: connect: connection refused"), failure{scope: transient}},
		{"held", errHeld, failure{scope: transient}},
	} {
		if got := classify(tc.err); got != tc.want {
			t.Errorf("%s: classify(%v) = %+v, want %+v", tc.name, tc.err, got, tc.want)
		}
	}
	// The reason labels are a fixed set that covers every verdict.
	labels := reasons()
	for _, c := range append(append([]*kerr.Error{}, recordCodes...), topicCodes...) {
		if !slices.Contains(labels, classify(c).reason) {
			t.Errorf("reason %s of %s is not a pre-declared label", classify(c).reason, c.Message)
		}
	}
	if len(labels) != len(recordCodes)+len(topicCodes)+2 {
		t.Errorf("labels %v", labels)
	}
}

// countingProducer counts the records a Producer was given.
type countingProducer struct {
	Producer
	n atomic.Int32
}

func (c *countingProducer) Produce(ctx context.Context, r *kgo.Record, promise func(*kgo.Record, error)) {
	c.n.Add(1)
	c.Producer.Produce(ctx, r, promise)
}

// poisonRelay is a relay without a database: enough for publishBatch,
// with a probe producer of its own (counted).
func poisonRelay(t *testing.T, c *kfake.Cluster, opts ...kgo.Opt) (*Relay, *countingProducer) {
	t.Helper()
	mk := func() *kgo.Client {
		cl, err := kgo.NewClient(append(ProducerOpts(c.ListenAddrs(), 0), opts...)...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(cl.Close)
		return cl
	}
	probe := &countingProducer{Producer: mk()}
	cfg := Config{ID: "t", TopicPrefix: "p", PoisonAttempts: 3, PoisonInterval: time.Second, Probe: probe}
	cfg.defaults()
	r := &Relay{cfg: cfg, prods: []Producer{mk()}, probe: probe, log: slog.New(slog.DiscardHandler), m: newMetrics(prometheus.NewRegistry()),
		poison: []poison{{rows: map[int64]*suspect{}}}}
	return r, probe
}

// bigRow is a row whose record is larger than 4 KiB even compressed.
func bigRow(id int64, agg string, version int64) row {
	r := mkRow(id, agg, version)
	b := make([]byte, 6000)
	_, _ = rand.Read(b)
	r.Payload = []byte(`{"blob":"` + base64.StdEncoding.EncodeToString(b) + `"}`)
	return r
}

// onKafka returns the versions of each key on topic, in offset order.
func onKafka(t *testing.T, c *kfake.Cluster, topic string) map[string][]int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	out := map[string][]int64{}
	req := kmsg.NewPtrListOffsetsRequest()
	rt := kmsg.NewListOffsetsRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewListOffsetsRequestTopicPartition()
	rp.Timestamp = -1
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	ends := resp.Topics[0].Partitions[0].Offset
	n := int64(0)
	for n < ends && ctx.Err() == nil {
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
			n++
			env, err := envelope.Decode(r.Value)
			if err != nil {
				t.Fatal(err)
			}
			out[string(r.Key)] = append(out[string(r.Key)], env.Version)
		})
	}
	return out
}

// smallMessageKafka is a one-partition fake cluster whose broker refuses
// batches over 4 KiB (bigRow's records), and its order topic.
func smallMessageKafka(t *testing.T) (string, *kfake.Cluster) {
	t.Helper()
	topic := envelope.Topic("p", "order")
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, topic), kfake.BrokerConfigs(map[string]string{"message.max.bytes": "4096"}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return topic, c
}

// A row over the broker's max.message.bytes fails its whole produce
// batch. Only the row itself becomes a suspect (its neighbours, sent
// alone, are published at once); its aggregate's later rows wait; after
// PoisonAttempts confirmed attempts at least PoisonInterval apart it is
// dead-lettered, and nothing of its aggregate reached Kafka.
func TestPoisonRowIsConfirmedAloneAndDeadLettered(t *testing.T) {
	topic, c := smallMessageKafka(t)
	r, probe := poisonRelay(t, c)
	p := &r.poison[0]
	ctx := context.Background()
	t0 := time.Now()

	// One partition: every record shares the poison row's produce batches.
	batch1 := []row{mkRow(1, "a", 1), bigRow(2, "poison", 1), mkRow(3, "b", 1), mkRow(4, "poison", 2), mkRow(5, "a", 2), mkRow(6, "b", 2)}
	res := r.publishBatch(ctx, 0, p, batch1, t0)
	if res.err != nil {
		t.Fatalf("a poison row is no transient failure: %v", res.err)
	}
	// The neighbours' first rows that failed with the poison row went
	// alone; their later rows go with the next batch, at once. Which rows
	// shared the poison row's produce batch depends on the client's
	// timing (linger 0: the first record may leave before the others
	// are queued), so a neighbour's second row may have been acked with
	// the first pass. Never a row of the poison's aggregate.
	acked := res.ids
	if !slices.Contains(acked, 1) || !slices.Contains(acked, 3) || slices.Contains(acked, 2) || slices.Contains(acked, 4) ||
		!slices.IsSorted(acked) {
		t.Fatalf("deletable %v, want 1 and 3 (perhaps 5 and 6), nothing of the poison's aggregate", acked)
	}
	var left []row
	var want []int64
	for _, r := range []row{mkRow(5, "a", 2), mkRow(6, "b", 2)} {
		if !slices.Contains(acked, r.ID) {
			left, want = append(left, r), append(want, r.ID)
		}
	}
	if len(left) > 0 && !res.retryNow {
		t.Fatalf("rows %v of the neighbours are left, but no retry at once", want)
	}
	res = r.publishBatch(ctx, 0, p, append([]row{bigRow(2, "poison", 1), mkRow(4, "poison", 2)}, left...), t0.Add(10*time.Millisecond))
	if res.err != nil || !slices.Equal(res.ids, want) {
		t.Fatalf("next batch: err %v, deletable %v, want %v (every other aggregate in full, nothing of the poison's)", res.err, res.ids, want)
	}
	if s := p.rows[2]; s == nil || s.attempts != 1 || s.reason != "MESSAGE_TOO_LARGE" || len(p.rows) != 1 {
		t.Fatalf("suspects %v, want only outbox id 2 with one MESSAGE_TOO_LARGE attempt", p.rows)
	}
	if len(res.dead) != 0 {
		t.Fatalf("dead-lettered after one attempt: %v", res.dead)
	}
	if excl := p.exclusions(); len(excl) != 1 || excl[0] != (exclusion{"order", "poison", 2}) {
		t.Fatalf("claim exclusions %v", excl)
	}

	// Before PoisonInterval: the suspect is neither sent nor counted;
	// others flow.
	probes := probe.n.Load()
	res = r.publishBatch(ctx, 0, p, []row{bigRow(2, "poison", 1), mkRow(4, "poison", 2), mkRow(7, "c", 1)}, t0.Add(500*time.Millisecond))
	if res.err != nil || !slices.Equal(res.ids, []int64{7}) || p.rows[2].attempts != 1 || probe.n.Load() != probes {
		t.Fatalf("before the interval: err %v, ids %v, attempts %d, probes %d→%d", res.err, res.ids, p.rows[2].attempts, probes, probe.n.Load())
	}
	res = r.publishBatch(ctx, 0, p, []row{bigRow(2, "poison", 1), mkRow(4, "poison", 2)}, t0.Add(time.Second))
	if res.err != nil || len(res.ids) != 0 || p.rows[2].attempts != 2 || len(res.dead) != 0 {
		t.Fatalf("second attempt: err %v, ids %v, attempts %d, dead %v", res.err, res.ids, p.rows[2].attempts, res.dead)
	}
	res = r.publishBatch(ctx, 0, p, []row{bigRow(2, "poison", 1), mkRow(4, "poison", 2), mkRow(8, "c", 2)}, t0.Add(2*time.Second))
	if len(res.dead) != 1 || res.dead[0].row.ID != 2 || res.dead[0].attempts != 3 || res.dead[0].reason != "MESSAGE_TOO_LARGE" {
		t.Fatalf("third attempt: dead %+v, want outbox id 2 after 3 attempts", res.dead)
	}
	if !slices.Equal(res.ids, []int64{8}) {
		t.Fatalf("third attempt: deletable %v, want [8] (the held row 4 stays)", res.ids)
	}

	got := onKafka(t, c, topic)
	if len(got["poison"]) != 0 {
		t.Fatalf("versions %v of the poison aggregate reached Kafka", got["poison"])
	}
	for k, want := range map[string][]int64{"a": {1, 2}, "b": {1, 2}, "c": {1, 2}} {
		if !slices.Equal(got[k], want) {
			t.Errorf("key %s: versions %v on Kafka, want %v", k, got[k], want)
		}
	}
}

// A row whose envelope cannot be built is never sent, nor are its
// aggregate's later rows; it is dead-lettered like a refused one.
func TestUnbuildableEnvelopeHoldsItsAggregate(t *testing.T) {
	topic := envelope.Topic("p", "order")
	c := fakeKafka(t, 1, topic)
	r, probe := poisonRelay(t, c)
	r.cfg.PoisonAttempts = 2
	p := &r.poison[0]
	bad := mkRow(2, "bad", 1)
	bad.Payload = []byte(`not json`)
	rows := []row{mkRow(1, "a", 1), bad, mkRow(3, "bad", 2), mkRow(4, "a", 2)}
	t0 := time.Now()
	res := r.publishBatch(context.Background(), 0, p, rows, t0)
	if res.err != nil || !slices.Equal(res.ids, []int64{1, 4}) {
		t.Fatalf("err %v, deletable %v, want [1 4]", res.err, res.ids)
	}
	if s := p.rows[2]; s == nil || s.reason != reasonEnvelope || s.attempts != 1 {
		t.Fatalf("suspect %+v", p.rows)
	}
	res = r.publishBatch(context.Background(), 0, p, []row{bad, mkRow(3, "bad", 2)}, t0.Add(time.Second))
	if len(res.dead) != 1 || res.dead[0].reason != reasonEnvelope || len(res.ids) != 0 {
		t.Fatalf("dead %+v, ids %v", res.dead, res.ids)
	}
	if n := probe.n.Load(); n != 0 {
		t.Fatalf("%d records sent to confirm an envelope failure, want none", n)
	}
	if got := onKafka(t, c, topic); len(got["bad"]) != 0 || !slices.Equal(got["a"], []int64{1, 2}) {
		t.Fatalf("on Kafka: %v", got)
	}
}

// A topic-wide refusal (here: the topic does not exist, which franz-go
// reports after its metadata retries) is confirmed with one row of the
// topic, not one per aggregate, and counts for every aggregate of that
// topic in the batch; other topics flow.
func TestTopicRefusalIsConfirmedOncePerTopic(t *testing.T) {
	c := fakeKafka(t, 1, envelope.Topic("p", "order")) // no product topic
	r, probe := poisonRelay(t, c)
	p := &r.poison[0]
	var rows []row
	for i, agg := range []string{"x", "y", "z"} {
		pr := mkRow(int64(2*i+1), agg, 1)
		pr.AggregateType = "product"
		rows = append(rows, pr, mkRow(int64(2*i+2), "o-"+agg, 1))
	}
	res := r.publishBatch(context.Background(), 0, p, rows, time.Now())
	if res.err != nil || !slices.Equal(res.ids, []int64{2, 4, 6}) {
		t.Fatalf("err %v, deletable %v, want the orders [2 4 6]", res.err, res.ids)
	}
	if n := probe.n.Load(); n != 1 {
		t.Fatalf("%d rows sent alone, want 1 for the whole topic", n)
	}
	for _, id := range []int64{1, 3, 5} {
		if s := p.rows[id]; s == nil || s.reason != "UNKNOWN_TOPIC_OR_PARTITION" || s.attempts != 1 {
			t.Fatalf("product row %d: suspect %+v", id, s)
		}
	}
}

// Transient failures count nothing: no suspect, no dead letter, the
// worker backs off; a suspect whose attempt fails transiently starts
// over.
func TestTransientFailureCountsNothing(t *testing.T) {
	topic := envelope.Topic("p", "order")
	c := fakeKafka(t, 1, topic)
	var down atomic.Bool
	c.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if !down.Load() {
			return nil, nil, false
		}
		pr := req.(*kmsg.ProduceRequest)
		resp := pr.ResponseKind().(*kmsg.ProduceResponse)
		for _, tp := range pr.Topics {
			rt := kmsg.NewProduceResponseTopic()
			rt.Topic, rt.TopicID = tp.Topic, tp.TopicID
			for _, pp := range tp.Partitions {
				rp := kmsg.NewProduceResponseTopicPartition()
				rp.Partition, rp.ErrorCode = pp.Partition, kerr.NotEnoughReplicas.Code
				rt.Partitions = append(rt.Partitions, rp)
			}
			resp.Topics = append(resp.Topics, rt)
		}
		return resp, nil, true
	})
	// No retries inside franz-go: each refusal fails the record at once.
	r, probe := poisonRelay(t, c, kgo.RecordRetries(0))
	p := &r.poison[0]
	ctx := context.Background()
	t0 := time.Now()

	down.Store(true)
	res := r.publishBatch(ctx, 0, p, []row{mkRow(1, "a", 1), mkRow(2, "b", 1)}, t0)
	if res.err == nil || len(res.ids) != 0 || len(p.rows) != 0 || probe.n.Load() != 0 {
		t.Fatalf("outage: err %v, ids %v, suspects %v, probes %d; want an error and nothing else", res.err, res.ids, p.rows, probe.n.Load())
	}

	// A suspect (an unbuildable envelope is simplest to make one) whose
	// next attempt meets the outage is forgotten: its count starts over.
	bad := mkRow(3, "bad", 1)
	bad.Metadata = []byte(`{`)
	down.Store(false)
	r.publishBatch(ctx, 0, p, []row{bad}, t0)
	if p.rows[3] == nil {
		t.Fatal("setup: no suspect")
	}
	bad.Metadata = []byte(`{}`) // sendable now, but Kafka is down
	down.Store(true)
	res = r.publishBatch(ctx, 0, p, []row{bad}, t0.Add(time.Second))
	if res.err == nil || len(p.rows) != 0 || len(res.dead) != 0 {
		t.Fatalf("suspect during an outage: err %v, suspects %v, dead %v; want an error, no suspect, no dead letter", res.err, p.rows, res.dead)
	}
	if got := testutil.ToFloat64(r.m.deadLettered.WithLabelValues("MESSAGE_TOO_LARGE")); got != 0 {
		t.Fatalf("dead_lettered_total = %v", got)
	}
}
