package projector

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"cqrsflow/internal/envelope"
	"cqrsflow/internal/topics"
)

// DLQ headers set on every dead-lettered record (after the original
// headers). The aggregate and blocked-* headers are set when known.
const (
	HeaderDLQReason          = "x-dlq-reason"
	HeaderDLQReasonCode      = "x-dlq-reason-code"
	HeaderDLQSourceTopic     = "x-dlq-source-topic"
	HeaderDLQSourcePartition = "x-dlq-source-partition"
	HeaderDLQSourceOffset    = "x-dlq-source-offset"
	HeaderDLQProjection      = "x-dlq-projection"
	HeaderDLQAggregateID     = "x-dlq-aggregate-id"
	HeaderDLQVersion         = "x-dlq-version"
	HeaderDLQAt              = "x-dlq-at"
	HeaderDLQBlockedVersion  = "x-dlq-blocked-version"
	HeaderDLQBlockedTopic    = "x-dlq-blocked-topic"
	HeaderDLQBlockedPart     = "x-dlq-blocked-partition"
	HeaderDLQBlockedOffset   = "x-dlq-blocked-offset"
)

// dlqHeaderPrefix starts every header above; a record dead-lettered again
// (by a redrive) loses its old ones first.
const dlqHeaderPrefix = "x-dlq-"

// maxReasonBytes bounds the reason header: an error can quote a whole
// payload, and the reason only needs to say what went wrong.
const maxReasonBytes = 1000

// clipReason is the reason as the x-dlq-reason header carries it.
func clipReason(s string) string { return s[:min(len(s), maxReasonBytes)] }

// kafkaDLQ produces dead letters to <topic>.dlq with the consumer's own
// client (acks=all), so a dead letter is acknowledged before the offset of
// its source record is committed. The original key is kept, so one
// aggregate's dead letters share a DLQ partition, in order.
type kafkaDLQ struct {
	cl         *kgo.Client
	projection string
}

func (d *kafkaDLQ) Send(ctx context.Context, letters []*DeadLetter) error {
	if len(letters) == 0 {
		return nil
	}
	recs := make([]*kgo.Record, len(letters))
	now := time.Now().UTC().Format(time.RFC3339Nano)
	for i, l := range letters {
		recs[i] = dlqRecord(l, d.projection, now)
	}
	res := d.cl.ProduceSync(ctx, recs...)
	if err := res.FirstErr(); err != nil {
		return fmt.Errorf("producing to %s: %w", recs[0].Topic, err)
	}
	for i, r := range res {
		letters[i].DLQPartition, letters[i].DLQOffset = r.Record.Partition, r.Record.Offset
	}
	return nil
}

// dlqRecord is the dead letter of l: the original key, value and headers
// plus the x-dlq-* headers.
func dlqRecord(l *DeadLetter, projection, at string) *kgo.Record {
	rec, reason := l.Rec, clipReason(l.Reason)
	out := &kgo.Record{Topic: envelope.DLQTopic(rec.Topic), Key: rec.Key, Value: rec.Value}
	for _, h := range rec.Headers {
		if !strings.HasPrefix(h.Key, dlqHeaderPrefix) {
			out.Headers = append(out.Headers, h)
		}
	}
	add := func(k, v string) { out.Headers = append(out.Headers, kgo.RecordHeader{Key: k, Value: []byte(v)}) }
	add(HeaderDLQReason, reason)
	add(HeaderDLQReasonCode, l.Code)
	add(HeaderDLQSourceTopic, rec.Topic)
	add(HeaderDLQSourcePartition, strconv.Itoa(int(rec.Partition)))
	add(HeaderDLQSourceOffset, strconv.FormatInt(rec.Offset, 10))
	add(HeaderDLQProjection, projection)
	add(HeaderDLQAt, at)
	if l.AggregateID != "" {
		add(HeaderDLQAggregateID, l.AggregateID)
		add(HeaderDLQVersion, strconv.FormatInt(l.Version, 10))
	}
	if b := l.Blocked; b != nil {
		add(HeaderDLQBlockedVersion, strconv.FormatInt(b.Version, 10))
		add(HeaderDLQBlockedTopic, b.Topic)
		add(HeaderDLQBlockedPart, strconv.Itoa(int(b.Partition)))
		add(HeaderDLQBlockedOffset, strconv.FormatInt(b.Offset, 10))
	}
	return out
}

// ensureDLQTopic creates the dead-letter topic of topic if it is missing,
// with infinite retention like the event topics (a dead letter is kept
// until an operator deals with it).
func ensureDLQTopic(ctx context.Context, adm *kadm.Client, topic string, partitions int32, log *slog.Logger) error {
	err := topics.Ensure(ctx, adm, topics.Spec{Name: envelope.DLQTopic(topic), Partitions: partitions,
		ReplicationFactor: topics.DefaultReplicationFactor, Configs: topics.InfiniteRetention(), Log: log})
	if err != nil {
		return fmt.Errorf("ensuring the DLQ topic: %w", err)
	}
	return nil
}
