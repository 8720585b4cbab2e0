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
	rcs, err := adm.DescribeTopicConfigs(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := rcs.On(name, nil)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, c := range rc.Configs {
		if c.Key == "min.insync.replicas" {
			found = true
			if c.MaybeValue() != "1" || c.Source != kmsg.ConfigSourceDynamicTopicConfig {
				t.Errorf("min.insync.replicas = %q from %s, want 1 set on the topic", c.MaybeValue(), c.Source)
			}
		}
	}
	if !found {
		t.Error("min.insync.replicas not described")
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
