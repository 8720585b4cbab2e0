package relay

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"cqrsflow/internal/envelope"
	"cqrsflow/internal/tracing"
)

// Producer is what the relay needs from a Kafka client (*kgo.Client made
// with ProducerOpts): Produce buffers a record, Flush sends everything
// buffered and waits until every record is answered.
type Producer interface {
	Produce(ctx context.Context, r *kgo.Record, promise func(*kgo.Record, error))
	Flush(ctx context.Context) error
}

// NewProducer makes a producer for New, which makes one per publish loop
// (and one for probes unless Config.Probe is set): each loop flushes its
// own batch, see publish.
type NewProducer func() (Producer, error)

// ProducerOpts are the franz-go options the relay publishes with:
// idempotent writes (franz-go's default), acks=all, Kafka's own murmur2
// key partitioning, and manual flushing. kgo.StickyKeyPartitioner(nil)
// hashes keyed records with KafkaHasher(murmur2) = (murmur2(key) &
// 0x7fffffff) % n, exactly the Java client's default partitioner, so any
// Java or librdkafka (murmur2_random) client agrees on a key's partition.
// deliveryTimeout bounds how long a record waits while Kafka is
// unreachable before the batch fails and the relay backs off (0 = wait
// forever).
//
// Manual flushing keeps an aggregate's versions in order on Kafka when a
// record fails: franz-go fails every record buffered for a partition
// behind a failed one (its produce batches carry consecutive idempotent
// sequence numbers), but a record produced after the failure was handled
// goes out in a fresh batch and is written. With records sent as soon as
// they are produced, version 2 of an aggregate could then land on Kafka
// while version 1, sent a moment earlier and refused, did not (seen in
// CI: the relay's produce loop was descheduled between the two Produce
// calls). With manual flushing nothing is sent before the whole batch is
// buffered (publish, produceAll and probeRow call Flush), so a failure
// takes every later record of its partition with it. The client must not
// be shared by two loops: one loop's Flush would send the other's
// half-produced batch.
func ProducerOpts(brokers []string, deliveryTimeout time.Duration) []kgo.Opt {
	opts := []kgo.Opt{
		kgo.SeedBrokers(brokers...),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)),
		kgo.ProducerLinger(0),
		kgo.ManualFlushing(),
		kgo.ProducerBatchMaxBytes(producerBatchMaxBytes),
	}
	if deliveryTimeout > 0 {
		opts = append(opts, kgo.RecordDeliveryTimeout(deliveryTimeout))
	}
	return opts
}

// producerBatchMaxBytes is the franz-go client's limit of one produce
// batch (its default, Kafka's default max.message.bytes). A record over
// it is failed by the client alone, without failing the records behind
// it as a refusal by Kafka does, so publish does not hand it over (see
// oversized).
const producerBatchMaxBytes = 1_000_012

// batchOverhead bounds the bytes a one-record batch adds to its record's
// key, value and headers: the batch header (61 bytes) plus the record's
// length, attribute, delta and header varints.
const batchOverhead = 128

// oversized says whether rec cannot fit a produce batch: the client would
// refuse it on its own (MESSAGE_TOO_LARGE) and still send the aggregate's
// later records. publish treats it as a refused row whose aggregate stops
// in this batch; the probe then confirms the refusal.
func oversized(rec *kgo.Record) error {
	n := len(rec.Key) + len(rec.Value) + batchOverhead
	for _, h := range rec.Headers {
		n += len(h.Key) + len(h.Value) + 10
	}
	if n <= producerBatchMaxBytes {
		return nil
	}
	return fmt.Errorf("%w (record of about %d bytes, over the producer's batch limit of %d)", kerr.MessageTooLarge, n, producerBatchMaxBytes)
}

// envelopeOverhead is room for an envelope's keys, ids and times beside
// the payload and metadata (about 380 bytes), so the buffer is allocated
// once.
const envelopeOverhead = 512

// topicNamer names the topic of an aggregate type's events.
type topicNamer func(aggregateType string) string

// prefixTopics names topics <prefix>.<type>.events, or
// <prefixes[type]>.<type>.events for a type moved to a topic of its own
// (a repartition's cut-over, docs/operations.md).
func prefixTopics(prefix string, prefixes map[string]string) topicNamer {
	return func(aggregateType string) string {
		if p, ok := prefixes[aggregateType]; ok {
			return envelope.Topic(p, aggregateType)
		}
		return envelope.Topic(prefix, aggregateType)
	}
}

// topicOf names the topic of an aggregate type's events under r's config.
func (r *Relay) topicOf(aggregateType string) string {
	return prefixTopics(r.cfg.TopicPrefix, r.cfg.TopicPrefixes)(aggregateType)
}

// record builds the Kafka record of an outbox row for topic: key =
// aggregate id, value = envelope JSON (envelope.AppendJSON, which the
// projector's verification builds from the events table too), headers of
// docs/architecture.md. Backfill publishes events with it too.
//
// The trace context stored with the event travels as the traceparent and
// tracestate headers when it is valid; a malformed one is left out and
// never fails the row.
func record(topic string, r *row) (*kgo.Record, error) {
	value, meta, err := envelope.AppendJSONMeta(make([]byte, 0, envelopeOverhead+len(r.Payload)+len(r.Metadata)), &r.Row)
	if err != nil {
		return nil, err
	}
	headers := []kgo.RecordHeader{
		{Key: envelope.HeaderEventType, Value: []byte(r.EventType)},
		{Key: envelope.HeaderSchemaVersion, Value: []byte(strconv.Itoa(r.SchemaVersion))},
		{Key: envelope.HeaderEventID, Value: []byte(r.EventID)},
		{Key: envelope.HeaderContentType, Value: []byte(envelope.ContentType)},
	}
	if meta.Traceparent != "" {
		headers = append(headers, tracing.Headers(tracing.Parse(string(meta.Traceparent), string(meta.Tracestate)))...)
	}
	return &kgo.Record{
		Topic:   topic,
		Key:     []byte(r.AggregateID),
		Value:   value,
		Headers: headers,
	}, nil
}

// envelopeErr marks err, from building a row's envelope, as errEnvelope.
func envelopeErr(err error) error { return fmt.Errorf("%w: %w", errEnvelope, err) }

// publish produces one record per row whose errs entry is nil, flushes
// them together (see ProducerOpts) and waits for every acknowledgement:
// errs[i] is then nil when rows[i] was acked. Rows with an error already
// set are not sent (they wait for something, errHeld). A row whose envelope cannot be
// built is not sent, and neither are its aggregate's later rows: nothing
// of an aggregate reaches Kafka ahead of an earlier row of it that this
// relay knows failed. A record too large for a produce batch (oversized)
// is not sent either and stops its aggregate the same way.
//
// The wait ends early when ctx ends (the batch's shutdown grace ran out):
// a record a restarting broker holds in franz-go's buffer does not heed
// the context, and a relay must still stop. Every record not yet acked
// then counts as failed (errAbandoned), so its row stays in the outbox and
// is published again: at least once, never skipped.
func publish(ctx context.Context, p Producer, topicOf topicNamer, rows []row, errs []error) (recs []*kgo.Record, ackedAt []time.Time) {
	recs = make([]*kgo.Record, len(rows))
	ackedAt = make([]time.Time, len(rows))
	var broken map[aggKey]bool
	var (
		wg        sync.WaitGroup
		mu        sync.Mutex // guards errs, ackedAt and waiting against late promises
		waiting   = make([]bool, len(rows))
		abandoned bool
	)
	for i := range rows {
		if errs[i] != nil {
			continue
		}
		if broken[keyOf(&rows[i])] {
			errs[i] = errHeld
			continue
		}
		rec, err := record(topicOf(rows[i].AggregateType), &rows[i])
		if err != nil {
			err = envelopeErr(err)
		} else {
			err = oversized(rec)
		}
		if err != nil {
			errs[i] = err
			if broken == nil {
				broken = map[aggKey]bool{}
			}
			broken[keyOf(&rows[i])] = true
			continue
		}
		recs[i] = rec
		wg.Add(1)
		mu.Lock()
		waiting[i] = true
		mu.Unlock()
		p.Produce(ctx, rec, func(_ *kgo.Record, err error) {
			defer wg.Done()
			mu.Lock()
			defer mu.Unlock()
			if !abandoned {
				errs[i], ackedAt[i], waiting[i] = err, time.Now(), false
			}
		})
	}
	acked := make(chan struct{})
	go func() { wg.Wait(); close(acked) }()
	// Flush returns when every record is answered or ctx ends; the
	// promises say which.
	_ = p.Flush(ctx)
	select {
	case <-acked:
	case <-ctx.Done():
		mu.Lock()
		abandoned = true
		for i, w := range waiting {
			if w {
				errs[i] = fmt.Errorf("%w: %w", errAbandoned, ctx.Err())
			}
		}
		mu.Unlock()
	}
	return recs, ackedAt
}

// errAbandoned: the relay stopped waiting for the record's acknowledgement.
var errAbandoned = errors.New("stopped waiting for the acknowledgement")

// deletable returns the ids of the rows that may leave the outbox: acked
// rows that precede the first failed row of their aggregate in this batch
// (rows are in id order, which is version order per aggregate). An acked
// row after a failure of its aggregate stays and is republished with the
// failed one, so the aggregate's first occurrences on Kafka stay in
// version order; the cost is a duplicate, which the projector drops.
// (publish does not send the rows behind one it knows failed, and with
// the batch flushed at once franz-go fails every record of a partition
// behind a failed one, see ProducerOpts: this is a safety net.)
func deletable(rows []row, errs []error) []int64 {
	failed := map[aggKey]bool{}
	ids := make([]int64, 0, len(rows))
	for i := range rows {
		k := keyOf(&rows[i])
		if errs[i] != nil {
			failed[k] = true
			continue
		}
		if !failed[k] {
			ids = append(ids, rows[i].ID)
		}
	}
	return ids
}
