// Package topics creates and verifies cqrsflow's Kafka topics with kadm:
// one `<prefix>.<aggregate_type>.events` topic per aggregate type and its
// `.dlq` companion, with infinite retention (replay by offset reset needs
// the full history).
package topics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"

	"cqrsflow/internal/envelope"
)

// Defaults of docs/architecture.md.
const (
	DefaultPartitions        int32 = 12
	DefaultReplicationFactor int16 = 1
)

// ErrInvalidSpec is returned for a Spec that cannot be created.
var ErrInvalidSpec = errors.New("invalid topic spec")

// ErrMisconfigured is returned for an existing topic whose settings make
// every acks=all write fail: retrying does not help, an operator must
// change the topic.
var ErrMisconfigured = errors.New("topic misconfigured")

// Spec describes one topic to ensure.
type Spec struct {
	Name              string
	Partitions        int32
	ReplicationFactor int16
	// MinInsyncReplicas is the topic's min.insync.replicas, set on
	// creation: how many replicas must have a write before an acks=all
	// producer gets its acknowledgement. 0 means DefaultMinInsyncReplicas.
	MinInsyncReplicas int16
	// Configs are topic configs set on creation (retention.ms, …); an
	// existing topic's configs are left alone.
	Configs map[string]*string
	// Log receives the warning for an existing topic whose partition count
	// differs from Partitions; slog.Default() when nil.
	Log *slog.Logger
}

// InfiniteRetention is the retention.ms of every event and DLQ topic.
func InfiniteRetention() map[string]*string {
	v := "-1"
	return map[string]*string{"retention.ms": &v}
}

// EventSpecs returns the specs of the event topic and the DLQ topic of
// every aggregate type: `<prefix>.<type>.events` and `<prefix>.<type>.events.dlq`.
func EventSpecs(prefix string, aggregateTypes []string, partitions int32, rf int16, log *slog.Logger) []Spec {
	specs := make([]Spec, 0, 2*len(aggregateTypes))
	for _, t := range aggregateTypes {
		topic := envelope.Topic(prefix, t)
		for _, name := range []string{topic, envelope.DLQTopic(topic)} {
			specs = append(specs, Spec{Name: name, Partitions: partitions, ReplicationFactor: rf, Configs: InfiniteRetention(), Log: log})
		}
	}
	return specs
}

func (s Spec) validate() error {
	var errs []error
	if s.Name == "" {
		errs = append(errs, errors.New("name is empty"))
	}
	if s.Partitions < 1 {
		errs = append(errs, fmt.Errorf("partitions must be >= 1, got %d", s.Partitions))
	}
	if s.ReplicationFactor < 1 {
		errs = append(errs, fmt.Errorf("replication factor must be >= 1, got %d", s.ReplicationFactor))
	}
	if s.MinInsyncReplicas < 0 || s.MinInsyncReplicas > s.ReplicationFactor {
		errs = append(errs, fmt.Errorf("min.insync.replicas must be in 1..replication factor (%d), got %d", s.ReplicationFactor, s.MinInsyncReplicas))
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w %q: %w", ErrInvalidSpec, s.Name, errors.Join(errs...))
	}
	return nil
}

// Ensure creates the topic if it does not exist and verifies it otherwise.
// An existing topic with a different partition count is logged as a
// warning, not an error: repartitioning is an operator's decision (it
// moves keys), so the relay keeps working with what exists.
func Ensure(ctx context.Context, adm *kadm.Client, spec Spec) error {
	if err := spec.validate(); err != nil {
		return err
	}
	log := spec.Log
	if log == nil {
		log = slog.Default()
	}
	minISR := spec.minInsync()
	configs := make(map[string]*string, len(spec.Configs)+1)
	for k, v := range spec.Configs {
		configs[k] = v
	}
	v := strconv.Itoa(int(minISR))
	configs[minInsyncKey] = &v
	resp, err := adm.CreateTopic(ctx, spec.Partitions, spec.ReplicationFactor, configs, spec.Name)
	if err == nil {
		err = resp.Err
	}
	switch {
	case err == nil:
		log.Info("topic created", "topic", spec.Name, "partitions", spec.Partitions, "replication_factor", spec.ReplicationFactor,
			"min_insync_replicas", minISR)
		// Judged by what was asked for: a new topic may not be in the
		// brokers' metadata yet.
		return checkCreated(ctx, adm, spec.Name, int(spec.ReplicationFactor), int(minISR), log)
	case errors.Is(err, kerr.TopicAlreadyExists):
	default:
		return fmt.Errorf("creating topic %s: %w", spec.Name, err)
	}
	d, err := DescribeExisting(ctx, adm, spec.Name)
	if err != nil {
		return err
	}
	if n := int32(len(d.Partitions)); n != spec.Partitions {
		log.Warn("existing topic has a different partition count than configured; keeping it",
			"topic", spec.Name, "partitions", n, "configured_partitions", spec.Partitions)
	}
	return CheckDurability(ctx, adm, spec.Name, log)
}

// existingTopicWait bounds how long Ensure waits for a topic that the
// controller says exists to appear in the broker's metadata.
const existingTopicWait = 10 * time.Second

// DescribeExisting describes a topic the controller reported as existing
// (or that the caller just created).
// A topic another client created a moment ago (two workers starting
// together) can be missing from the answering broker's metadata cache for
// a short while: UNKNOWN_TOPIC_OR_PARTITION is retried until
// existingTopicWait, every other error is returned at once.
func DescribeExisting(ctx context.Context, adm *kadm.Client, name string) (kadm.TopicDetail, error) {
	deadline := time.Now().Add(existingTopicWait)
	for pause := 50 * time.Millisecond; ; pause = min(2*pause, time.Second) {
		details, err := adm.ListTopics(ctx, name)
		if err != nil {
			return kadm.TopicDetail{}, fmt.Errorf("describing topic %s: %w", name, err)
		}
		d, ok := details[name]
		switch {
		case ok && d.Err == nil:
			return d, nil
		case ok && !errors.Is(d.Err, kerr.UnknownTopicOrPartition):
			return d, fmt.Errorf("describing topic %s: %w", name, d.Err)
		case time.Now().Add(pause).After(deadline):
			if !ok {
				return d, fmt.Errorf("describing topic %s: not in metadata response", name)
			}
			return d, fmt.Errorf("describing topic %s: still not in the metadata %s after it was reported as existing: %w", name, existingTopicWait, d.Err)
		}
		select {
		case <-ctx.Done():
			return d, fmt.Errorf("describing topic %s: %w", name, ctx.Err())
		case <-time.After(pause):
		}
	}
}

// EnsureAll ensures every spec, stopping at the first error.
func EnsureAll(ctx context.Context, adm *kadm.Client, specs []Spec) error {
	for _, s := range specs {
		if err := Ensure(ctx, adm, s); err != nil {
			return err
		}
	}
	return nil
}
