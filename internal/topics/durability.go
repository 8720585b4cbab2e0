package topics

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"

	"github.com/twmb/franz-go/pkg/kadm"
)

const minInsyncKey = "min.insync.replicas"

// DefaultMinInsyncReplicas is min.insync.replicas for a replication factor:
// one less than it, at least 1. With RF 3 an acks=all write is on two
// replicas before it is acknowledged, and one broker may be down without
// stopping writes.
func DefaultMinInsyncReplicas(rf int16) int16 { return max(1, rf-1) }

func (s Spec) minInsync() int16 {
	if s.MinInsyncReplicas > 0 {
		return s.MinInsyncReplicas
	}
	return DefaultMinInsyncReplicas(s.ReplicationFactor)
}

// assessDurability judges what acks=all means for a topic with replication
// factor rf and min.insync.replicas minISR on a cluster of brokers: an
// error when no write can ever be acknowledged, a warning when an
// acknowledged write may live on one broker although the cluster has
// more, "" when acks=all means what it says.
func assessDurability(rf, minISR, brokers int) (warning string, err error) {
	switch {
	case minISR > rf:
		return "", fmt.Errorf("%w: min.insync.replicas=%d is above the replication factor %d: every acks=all write fails with NOT_ENOUGH_REPLICAS (lower min.insync.replicas with kafka-configs --alter)",
			ErrMisconfigured, minISR, rf)
	case brokers <= 1:
		return "", nil // a single broker cannot do better
	case rf == 1:
		return fmt.Sprintf("replication factor 1 on a cluster of %d brokers: acks=all is acknowledged by the only replica, and losing its broker loses acknowledged events (recreate the topic with a higher TOPIC_REPLICATION_FACTOR)", brokers), nil
	case minISR <= 1:
		return fmt.Sprintf("min.insync.replicas=%d with replication factor %d: acks=all may be acknowledged by the leader alone (set min.insync.replicas=%d with kafka-configs --alter)", minISR, rf, DefaultMinInsyncReplicas(int16(rf))), nil
	}
	return "", nil
}

// checkCreated judges a topic just created with rf and minISR.
func checkCreated(ctx context.Context, adm *kadm.Client, topic string, rf, minISR int, log *slog.Logger) error {
	brokers, err := adm.ListBrokers(ctx)
	if err != nil {
		return fmt.Errorf("listing brokers: %w", err)
	}
	return judge(topic, rf, minISR, len(brokers), log)
}

func judge(topic string, rf, minISR, brokers int, log *slog.Logger) error {
	warning, err := assessDurability(rf, minISR, brokers)
	if err != nil {
		return fmt.Errorf("topic %s: %w", topic, err)
	}
	if warning != "" {
		log.Warn("topic durability: "+warning, "topic", topic, "replication_factor", rf, "min_insync_replicas", minISR, "brokers", brokers)
	}
	return nil
}

// CheckDurability reads an existing topic's replication factor and
// effective min.insync.replicas and the cluster's broker count, logs a
// warning when they make acks=all weak, and returns ErrMisconfigured when
// they make every acks=all write fail.
func CheckDurability(ctx context.Context, adm *kadm.Client, topic string, log *slog.Logger) error {
	md, err := adm.Metadata(ctx, topic)
	if err != nil {
		return fmt.Errorf("describing topic %s: %w", topic, err)
	}
	td, ok := md.Topics[topic]
	if !ok || td.Err != nil || len(td.Partitions) == 0 {
		return fmt.Errorf("describing topic %s: not in metadata (%v)", topic, td.Err)
	}
	rf := 0
	for _, p := range td.Partitions {
		if rf == 0 || len(p.Replicas) < rf {
			rf = len(p.Replicas)
		}
	}
	rcs, err := adm.DescribeTopicConfigs(ctx, topic)
	if err != nil {
		return fmt.Errorf("describing the configs of topic %s: %w", topic, err)
	}
	rc, err := rcs.On(topic, nil)
	if err == nil {
		err = rc.Err
	}
	if err != nil {
		return fmt.Errorf("describing the configs of topic %s: %w", topic, err)
	}
	minISR := 1 // Kafka's default when neither the topic nor the broker sets it
	for _, c := range rc.Configs {
		if c.Key == minInsyncKey && c.Value != nil {
			if minISR, err = strconv.Atoi(*c.Value); err != nil {
				return fmt.Errorf("topic %s: %s=%q is not a number", topic, minInsyncKey, *c.Value)
			}
		}
	}
	return judge(topic, rf, minISR, len(md.Brokers), log)
}
