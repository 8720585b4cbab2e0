package projector

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"cqrsflow/internal/envelope"
	"cqrsflow/internal/topics"
)

// DLQ headers set on every dead-lettered record (with the original headers).
const (
	HeaderDLQReason          = "x-dlq-reason"
	HeaderDLQSourceTopic     = "x-dlq-source-topic"
	HeaderDLQSourcePartition = "x-dlq-source-partition"
	HeaderDLQSourceOffset    = "x-dlq-source-offset"
	HeaderDLQProjection      = "x-dlq-projection"
)

// maxReasonBytes bounds the reason header: an error can quote a whole
// payload, and the reason only needs to say what went wrong.
const maxReasonBytes = 1000

// kafkaDLQ produces dead letters to <topic>.dlq with the consumer's own
// client (acks=all), so a dead letter is acknowledged before the offset of
// its source record is committed.
type kafkaDLQ struct {
	cl         *kgo.Client
	projection string
}

func (d *kafkaDLQ) Send(ctx context.Context, rec *kgo.Record, reason string) error {
	if len(reason) > maxReasonBytes {
		reason = reason[:maxReasonBytes]
	}
	out := &kgo.Record{
		Topic: envelope.DLQTopic(rec.Topic),
		Key:   rec.Key,
		Value: rec.Value,
	}
	out.Headers = append(out.Headers, rec.Headers...)
	out.Headers = append(out.Headers,
		kgo.RecordHeader{Key: HeaderDLQReason, Value: []byte(reason)},
		kgo.RecordHeader{Key: HeaderDLQSourceTopic, Value: []byte(rec.Topic)},
		kgo.RecordHeader{Key: HeaderDLQSourcePartition, Value: []byte(strconv.Itoa(int(rec.Partition)))},
		kgo.RecordHeader{Key: HeaderDLQSourceOffset, Value: []byte(strconv.FormatInt(rec.Offset, 10))},
		kgo.RecordHeader{Key: HeaderDLQProjection, Value: []byte(d.projection)},
	)
	if err := d.cl.ProduceSync(ctx, out).FirstErr(); err != nil {
		return fmt.Errorf("producing to %s: %w", out.Topic, err)
	}
	return nil
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
