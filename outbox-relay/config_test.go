package main

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"cqrsflow/internal/cli"
	"cqrsflow/internal/config"
	"cqrsflow/internal/relay"
)

func parseConfig(args []string) (cfg, error) {
	var c cfg
	s := config.NewSet("outbox-relay")
	c.register(s)
	if err := s.Parse(args); err != nil {
		return c, err
	}
	return c, errors.Join(s.Err(), c.validate())
}

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

func TestParseConfigReportsEveryProblem(t *testing.T) {
	t.Setenv("BATCH_SIZE", "lots")
	_, err := parseConfig([]string{"-topic-prefix", "a b", "-topic-partitions", "0", "-aggregate-types", ",", "-lease-ttl", "10ms", "-kafka-brokers", "", "-wake-linger", "2s", "-rescan-interval", "10ms",
		"-poison-attempts", "0", "-poison-interval", "1ms"})
	if err == nil {
		t.Fatal("want error")
	}
	for _, want := range []string{"BATCH_SIZE", "TOPIC_PREFIX", "TOPIC_PARTITIONS", "AGGREGATE_TYPES", "LEASE_TTL", "KAFKA_BROKERS", "WAKE_LINGER", "RESCAN_INTERVAL", "POISON_ATTEMPTS", "POISON_INTERVAL"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not name %s: %v", want, err)
		}
	}
}

// TestCommandLine: -h exits 0 without secrets; typos and leftovers are
// usage errors (exit 2) that never start a relay.
func TestCommandLine(t *testing.T) {
	t.Setenv("POSTGRES_URL", "postgres://relay:hunter2@127.0.0.1:1/db?sslpassword=s3cr3t")
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"-h"}, cli.ExitOK, "Commands:"},
		{[]string{"run", "-h"}, cli.ExitOK, "POSTGRES_URL"},
		{[]string{"--version"}, cli.ExitOK, "outbox-relay "},
		{[]string{"runn"}, cli.ExitUsage, `unknown command "runn"`},
		{[]string{"run", "extra"}, cli.ExitUsage, "unexpected arguments"},
		{[]string{"-batch-size", "x"}, cli.ExitUsage, "batch-size"},
		// DEBUG_ADDR: loopback only, not the metrics address, run only.
		{[]string{"run", "-h"}, cli.ExitOK, "DEBUG_ADDR"},
		{[]string{"run", "-debug-addr", "0.0.0.0:6060"}, cli.ExitUsage, "DEBUG_ADDR: \"0.0.0.0:6060\" is not a loopback address"},
		{[]string{"run", "-debug-addr", ":6060"}, cli.ExitUsage, "not a loopback address"},
		{[]string{"run", "-debug-addr", "127.0.0.1:99999"}, cli.ExitUsage, "DEBUG_ADDR: \"127.0.0.1:99999\" is not host:port"},
		{[]string{"run", "-debug-addr", "127.0.0.1:9101"}, cli.ExitUsage, "DEBUG_ADDR must differ from METRICS_ADDR"},
		{[]string{"dead", "list", "-debug-addr", "127.0.0.1:6060"}, cli.ExitUsage, "debug-addr"},
	} {
		var stdout, stderr bytes.Buffer
		code := program.Run(context.Background(), tc.args, &stdout, &stderr)
		out := stdout.String() + stderr.String()
		if code != tc.code || !strings.Contains(out, tc.want) {
			t.Errorf("outbox-relay %v: exit %d, output %q; want exit %d and %q", tc.args, code, out, tc.code, tc.want)
		}
		for _, secret := range []string{"hunter2", "s3cr3t"} {
			if strings.Contains(out, secret) {
				t.Errorf("outbox-relay %v reveals %q:\n%s", tc.args, secret, out)
			}
		}
	}
}

func TestParseConfigDefaultsAreTheRelayDefaults(t *testing.T) {
	c, err := parseConfig(nil)
	if err != nil {
		t.Fatal(err)
	}
	d := relay.DefaultConfig()
	type shared struct {
		prefix                                        string
		batch, workers, poisonAttempts                int
		poll, linger, rescan, lease, shutdown, poison time.Duration
	}
	got := shared{c.TopicPrefix, c.BatchSize, c.Workers, c.PoisonAttempts, c.PollInterval, c.Linger, c.RescanInterval, c.LeaseTTL, c.ShutdownGrace, c.PoisonInterval}
	want := shared{d.TopicPrefix, d.BatchSize, d.Workers, d.PoisonAttempts, d.PollInterval, d.Linger, d.RescanInterval, d.LeaseTTL, d.ShutdownGrace, d.PoisonInterval}
	if got != want {
		t.Fatalf("flag defaults %+v, relay defaults %+v", got, want)
	}
}

// TestConnectionAndTopicSettings: the shared Kafka connection settings and
// TOPIC_MIN_INSYNC_REPLICAS are registered and validated with the rest.
func TestConnectionAndTopicSettings(t *testing.T) {
	c, err := parseConfig(nil)
	if err != nil || c.TopicMinInsync != 0 || c.Kafka.TLS || c.Kafka.SASLMechanism != "" {
		t.Fatalf("defaults: %+v, %v", c, err)
	}
	t.Setenv("KAFKA_SASL_PASSWORD", "relayHunter2")
	_, err = parseConfig([]string{"-kafka-sasl-mechanism", "GSSAPI", "-kafka-sasl-username", "relay", "-kafka-tls",
		"-kafka-tls-ca-file", "/nonexistent/ca.pem", "-topic-replication-factor", "2", "-topic-min-insync-replicas", "3"})
	for _, want := range []string{"KAFKA_SASL_MECHANISM", "KAFKA_TLS_CA_FILE", "TOPIC_MIN_INSYNC_REPLICAS must be in 0..TOPIC_REPLICATION_FACTOR (2), got 3"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not name %s", err, want)
		}
	}
	if err != nil && strings.Contains(err.Error(), "relayHunter2") {
		t.Errorf("error reveals the SASL password: %v", err)
	}
	c, err = parseConfig([]string{"-kafka-sasl-mechanism", "SCRAM-SHA-512", "-kafka-sasl-username", "relay", "-topic-replication-factor", "3", "-topic-min-insync-replicas", "2"})
	if err != nil || c.Kafka.SASLPassword != "relayHunter2" || c.TopicMinInsync != 2 {
		t.Fatalf("valid settings: %+v, %v", c, err)
	}
}
