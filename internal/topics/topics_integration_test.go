//go:build integration

package topics_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kmsg"

	"cqrsflow/internal/testenv"
	"cqrsflow/internal/topics"
)

// TestMinInsyncReplicasOnTheRealBroker: Ensure sets min.insync.replicas as
// a topic config on the local broker, and refuses an existing topic whose
// min.insync.replicas is above its replication factor (acks=all could
// never succeed there).
func TestMinInsyncReplicasOnTheRealBroker(t *testing.T) {
	adm := testenv.KafkaAdmin(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	name := strings.ReplaceAll(testenv.Name(t), "_", "-")
	t.Cleanup(func() { _, _ = adm.DeleteTopics(context.Background(), name, name+"-bad") })

	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, nil))
	if err := topics.Ensure(ctx, adm, topics.Spec{Name: name, Partitions: 2, ReplicationFactor: 1, Configs: topics.InfiniteRetention(), Log: log}); err != nil {
		t.Fatal(err)
	}
	// A topic created a moment ago can be described before the broker
	// has its configs: wait (bounded) until they are there.
	var mir *kadm.Config
	err := testenv.Until(ctx, 15*time.Second, 100*time.Millisecond, "min.insync.replicas described", func() (bool, error) {
		rcs, err := adm.DescribeTopicConfigs(ctx, name)
		if err != nil {
			return false, err
		}
		rc, err := rcs.On(name, nil)
		if err != nil {
			return false, err
		}
		for _, c := range rc.Configs {
			if c.Key == "min.insync.replicas" {
				mir = &c
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if mir.MaybeValue() != "1" || mir.Source != kmsg.ConfigSourceDynamicTopicConfig {
		t.Errorf("min.insync.replicas = %q from %s, want 1 set on the topic", mir.MaybeValue(), mir.Source)
	}
	if strings.Contains(buf.String(), "durability") {
		t.Errorf("a single-broker cluster cannot do better, yet: %s", buf.String())
	}

	two := "2"
	if _, err := adm.CreateTopic(ctx, 1, 1, map[string]*string{"min.insync.replicas": &two}, name+"-bad"); err != nil {
		t.Fatal(err)
	}
	err = topics.Ensure(ctx, adm, topics.Spec{Name: name + "-bad", Partitions: 1, ReplicationFactor: 1, Log: log})
	if !errors.Is(err, topics.ErrMisconfigured) || !strings.Contains(err.Error(), "min.insync.replicas=2 is above the replication factor 1") {
		t.Fatalf("existing topic with min.insync.replicas 2 > RF 1: err %v, want ErrMisconfigured", err)
	}
}
