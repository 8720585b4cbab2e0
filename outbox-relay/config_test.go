package main

import (
	"strings"
	"testing"
	"time"

	"cqrsflow/internal/relay"
)

func TestParseConfigDefaults(t *testing.T) {
	c, err := parseConfig(nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.TopicPrefix != "cqrsflow" || c.TopicPartitions != 12 || c.TopicReplication != 1 || c.MetricsAddr != "127.0.0.1:9101" ||
		strings.Join(c.AggregateTypes, ",") != "product,order" || c.BatchSize != 1000 || c.RelayID == "" || c.Linger != 25*time.Millisecond ||
		c.RescanInterval != time.Minute {
		t.Fatalf("defaults: %+v", c)
	}
}

// The flags default to the relay's own defaults, so the binary and a
// Relay built from a zero Config behave alike.
func TestParseConfigDefaultsAreTheRelayDefaults(t *testing.T) {
	c, err := parseConfig(nil)
	if err != nil {
		t.Fatal(err)
	}
	d := relay.DefaultConfig()
	type shared struct {
		prefix                                string
		batch, workers                        int
		poll, linger, rescan, lease, shutdown time.Duration
	}
	got := shared{c.TopicPrefix, c.BatchSize, c.Workers, c.PollInterval, c.Linger, c.RescanInterval, c.LeaseTTL, c.ShutdownGrace}
	want := shared{d.TopicPrefix, d.BatchSize, d.Workers, d.PollInterval, d.Linger, d.RescanInterval, d.LeaseTTL, d.ShutdownGrace}
	if got != want {
		t.Fatalf("flag defaults %+v, relay defaults %+v", got, want)
	}
}

func TestParseConfigReportsEveryProblem(t *testing.T) {
	t.Setenv("BATCH_SIZE", "lots")
	_, err := parseConfig([]string{"-topic-prefix", "a b", "-topic-partitions", "0", "-aggregate-types", ",", "-lease-ttl", "10ms", "-kafka-brokers", "", "-wake-linger", "2s", "-rescan-interval", "10ms"})
	if err == nil {
		t.Fatal("want error")
	}
	for _, want := range []string{"BATCH_SIZE", "TOPIC_PREFIX", "TOPIC_PARTITIONS", "AGGREGATE_TYPES", "LEASE_TTL", "KAFKA_BROKERS", "WAKE_LINGER", "RESCAN_INTERVAL"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not name %s: %v", want, err)
		}
	}
}
