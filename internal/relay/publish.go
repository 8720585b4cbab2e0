package relay

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"cqrsflow/internal/envelope"
)

// Producer is what the relay needs from a Kafka client (*kgo.Client).
type Producer interface {
	Produce(ctx context.Context, r *kgo.Record, promise func(*kgo.Record, error))
}

// ProducerOpts are the franz-go options the relay publishes with:
// idempotent writes (franz-go's default), acks=all, and Kafka's own
// murmur2 key partitioning. kgo.StickyKeyPartitioner(nil) hashes keyed
// records with KafkaHasher(murmur2) = (murmur2(key) & 0x7fffffff) % n,
// exactly the Java client's default partitioner, so any Java or librdkafka
// (murmur2_random) client agrees on a key's partition. deliveryTimeout
// bounds how long a record waits while Kafka is unreachable before the
// batch fails and the relay backs off (0 = wait forever).
func ProducerOpts(brokers []string, deliveryTimeout time.Duration) []kgo.Opt {
	opts := []kgo.Opt{
		kgo.SeedBrokers(brokers...),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)),
		kgo.ProducerLinger(0),
	}
	if deliveryTimeout > 0 {
		opts = append(opts, kgo.RecordDeliveryTimeout(deliveryTimeout))
	}
	return opts
}

// envelopeOverhead is room for an envelope's keys, ids and times beside
// the payload and metadata (about 380 bytes), so the buffer is allocated
// once.
const envelopeOverhead = 512

// record builds the Kafka record of an outbox row: key = aggregate id,
// value = envelope JSON (envelope.AppendJSON, which the projector's
// verification builds from the events table too), headers of
// docs/architecture.md.
func record(prefix string, r *row) (*kgo.Record, error) {
	value, err := envelope.AppendJSON(make([]byte, 0, envelopeOverhead+len(r.Payload)+len(r.Metadata)), &envelope.Row{
		AggregateType: r.AggregateType, AggregateID: r.AggregateID, GlobalPosition: r.GlobalPosition,
		EventID: r.EventID, EventType: r.EventType, SchemaVersion: r.SchemaVersion, Version: r.Version,
		Payload: r.Payload, Metadata: r.Metadata, OccurredAt: r.OccurredAt, RecordedAt: r.RecordedAt,
	})
	if err != nil {
		return nil, err
	}
	return &kgo.Record{
		Topic: envelope.Topic(prefix, r.AggregateType),
		Key:   []byte(r.AggregateID),
		Value: value,
		Headers: []kgo.RecordHeader{
			{Key: envelope.HeaderEventType, Value: []byte(r.EventType)},
			{Key: envelope.HeaderSchemaVersion, Value: []byte(strconv.Itoa(r.SchemaVersion))},
			{Key: envelope.HeaderEventID, Value: []byte(r.EventID)},
			{Key: envelope.HeaderContentType, Value: []byte(envelope.ContentType)},
		},
	}, nil
}

// envelopeErr marks err, from building a row's envelope, as errEnvelope.
func envelopeErr(err error) error { return fmt.Errorf("%w: %w", errEnvelope, err) }

// publish produces one record per row whose errs entry is nil,
// asynchronously, and waits for every acknowledgement: errs[i] is then
// nil when rows[i] was acked. Rows with an error already set are not sent
// (they wait for something, errHeld). A row whose envelope cannot be
// built is not sent, and neither are its aggregate's later rows: nothing
// of an aggregate reaches Kafka ahead of an earlier row of it that this
// relay knows failed.
//
// The wait ends early when ctx ends (the batch's shutdown grace ran out):
// a record a restarting broker holds in franz-go's buffer does not heed
// the context, and a relay must still stop. Every record not yet acked
// then counts as failed (errAbandoned), so its row stays in the outbox and
// is published again: at least once, never skipped.
func publish(ctx context.Context, p Producer, prefix string, rows []row, errs []error) (recs []*kgo.Record, ackedAt []time.Time) {
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
		rec, err := record(prefix, &rows[i])
		if err != nil {
			errs[i] = envelopeErr(err)
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
// (franz-go also fails every buffered record of a partition after a
// failed one, "gapless ordering", so such rows are rare.)
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
