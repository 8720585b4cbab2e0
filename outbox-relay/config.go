package main

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"

	"cqrsflow/internal/config"
	"cqrsflow/internal/kafka"
	"cqrsflow/internal/obs"
	"cqrsflow/internal/outbox"
	"cqrsflow/internal/relay"
	"cqrsflow/internal/topics"
)

// cfg is the outbox-relay configuration (env + flags of the same meaning).
type cfg struct {
	PostgresURL      string
	Kafka            kafka.Settings
	TopicPrefix      string
	AggregateTypes   []string
	TopicPrefixes    []string
	prefixes         map[string]string
	TopicPartitions  int
	TopicReplication int
	TopicMinInsync   int
	MetricsAddr      string
	Debug            obs.Debug // DEBUG_ADDR: pprof on loopback ("" = off)
	RelayID          string
	BatchSize        int
	Workers          int
	PollInterval     time.Duration
	Linger           time.Duration
	RescanInterval   time.Duration
	LeaseTTL         time.Duration
	DeliveryTimeout  time.Duration
	ShutdownGrace    time.Duration
	PoisonAttempts   int
	PoisonInterval   time.Duration
	Migrate          bool
}

var namePart = regexp.MustCompile(`^[a-zA-Z0-9._-]+$`)

func defaultRelayID() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		h = "relay"
	}
	return fmt.Sprintf("%s-%d", h, os.Getpid())
}

// register registers the relay's settings, each once with its default.
func (c *cfg) register(s *config.Set) {
	d := relay.DefaultConfig()
	s.URL(&c.PostgresURL, "POSTGRES_URL", config.DefaultPostgresURL, "PostgreSQL URL (may carry search_path)")
	c.Kafka.Register(s)
	s.String(&c.TopicPrefix, "TOPIC_PREFIX", d.TopicPrefix, "topic prefix: <prefix>.<aggregate_type>.events")
	s.List(&c.AggregateTypes, "AGGREGATE_TYPES", "product,order", "aggregate types whose topics are created/verified at start")
	s.List(&c.TopicPrefixes, "AGGREGATE_TOPIC_PREFIXES", "", "type=prefix,…: publish that aggregate type's events to <prefix>.<type>.events instead (a repartition's cut-over)")
	s.Int(&c.TopicPartitions, "TOPIC_PARTITIONS", int(topics.DefaultPartitions), "partitions of topics created at start")
	s.Int(&c.TopicReplication, "TOPIC_REPLICATION_FACTOR", int(topics.DefaultReplicationFactor), "replication factor of topics created at start")
	s.Int(&c.TopicMinInsync, "TOPIC_MIN_INSYNC_REPLICAS", 0, "min.insync.replicas of topics created at start (0: replication factor - 1, at least 1)")
	s.String(&c.MetricsAddr, "METRICS_ADDR", "127.0.0.1:9101", "listen address of /healthz, /readyz, /metrics")
	s.String(&c.RelayID, "RELAY_ID", defaultRelayID(), "relay id (lease owner); keep it stable across restarts to resume leases at once")
	s.Int(&c.BatchSize, "BATCH_SIZE", d.BatchSize, "outbox rows per batch")
	s.Int(&c.Workers, "PUBLISH_WORKERS", d.Workers, "concurrent publish loops (each serves shard % n; a shard stays in order)")
	s.Duration(&c.PollInterval, "POLL_INTERVAL", d.PollInterval, "poll interval when no NOTIFY arrives")
	s.Duration(&c.Linger, "WAKE_LINGER", d.Linger, "after a NOTIFY, wait this long before claiming so one batch carries that window's writes (0: at once)")
	s.Duration(&c.RescanInterval, "RESCAN_INTERVAL", d.RescanInterval, "how often each worker claims once from the start of its shards instead of from its low-water mark")
	s.Duration(&c.LeaseTTL, "LEASE_TTL", d.LeaseTTL, "shard lease TTL (renewed every TTL/3)")
	s.Duration(&c.DeliveryTimeout, "DELIVERY_TIMEOUT", 30*time.Second, "how long a record may wait for Kafka before its batch fails and is retried")
	s.Duration(&c.ShutdownGrace, "SHUTDOWN_GRACE", d.ShutdownGrace, "time to finish the batch in flight on SIGTERM")
	s.Int(&c.PoisonAttempts, "POISON_ATTEMPTS", d.PoisonAttempts, "confirmed refusals of a row (Kafka refused it sent alone) before it moves to outbox_dead_letters")
	s.Duration(&c.PoisonInterval, "POISON_INTERVAL", d.PoisonInterval, "least time between two attempts of a refused row")
	s.Bool(&c.Migrate, "MIGRATE", true, "apply database migrations at start")
}

// validate reports every problem at once.
func (c *cfg) validate() error {
	var errs []error
	if c.PostgresURL == "" {
		errs = append(errs, errors.New("POSTGRES_URL is empty"))
	}
	errs = append(errs, c.Kafka.Validate())
	if !namePart.MatchString(c.TopicPrefix) {
		errs = append(errs, fmt.Errorf("TOPIC_PREFIX %q: use letters, digits, '.', '_' or '-'", c.TopicPrefix))
	}
	if len(c.AggregateTypes) == 0 {
		errs = append(errs, errors.New("AGGREGATE_TYPES is empty"))
	}
	for _, t := range c.AggregateTypes {
		if !namePart.MatchString(t) {
			errs = append(errs, fmt.Errorf("AGGREGATE_TYPES: %q is not a valid topic name part", t))
		}
	}
	prefixes, err := parsePrefixes(c.TopicPrefixes, c.AggregateTypes)
	errs = append(errs, err)
	c.prefixes = prefixes
	if c.TopicPartitions < 1 {
		errs = append(errs, fmt.Errorf("TOPIC_PARTITIONS must be >= 1, got %d", c.TopicPartitions))
	}
	if c.TopicReplication < 1 || c.TopicReplication > 32767 {
		errs = append(errs, fmt.Errorf("TOPIC_REPLICATION_FACTOR must be in 1..32767, got %d", c.TopicReplication))
	}
	if c.TopicMinInsync < 0 || c.TopicMinInsync > c.TopicReplication {
		errs = append(errs, fmt.Errorf("TOPIC_MIN_INSYNC_REPLICAS must be in 0..TOPIC_REPLICATION_FACTOR (%d), got %d", c.TopicReplication, c.TopicMinInsync))
	}
	if strings.TrimSpace(c.RelayID) == "" {
		errs = append(errs, errors.New("RELAY_ID is empty"))
	}
	if c.BatchSize < 1 || c.BatchSize > 50000 {
		errs = append(errs, fmt.Errorf("BATCH_SIZE must be in 1..50000, got %d", c.BatchSize))
	}
	if c.Workers < 1 || c.Workers > outbox.ShardCount {
		errs = append(errs, fmt.Errorf("PUBLISH_WORKERS must be in 1..%d, got %d", outbox.ShardCount, c.Workers))
	}
	if c.Linger < 0 || c.Linger > time.Second {
		errs = append(errs, fmt.Errorf("WAKE_LINGER must be in 0..1s, got %s", c.Linger))
	}
	if c.RescanInterval < time.Second || c.RescanInterval > 24*time.Hour {
		errs = append(errs, fmt.Errorf("RESCAN_INTERVAL must be in 1s..24h, got %s", c.RescanInterval))
	}
	if c.PollInterval <= 0 {
		errs = append(errs, fmt.Errorf("POLL_INTERVAL must be > 0, got %s", c.PollInterval))
	}
	if c.LeaseTTL < time.Second {
		errs = append(errs, fmt.Errorf("LEASE_TTL must be >= 1s, got %s", c.LeaseTTL))
	}
	if c.DeliveryTimeout < 0 {
		errs = append(errs, fmt.Errorf("DELIVERY_TIMEOUT must be >= 0, got %s", c.DeliveryTimeout))
	}
	if c.PoisonAttempts < 1 || c.PoisonAttempts > 100 {
		errs = append(errs, fmt.Errorf("POISON_ATTEMPTS must be in 1..100, got %d", c.PoisonAttempts))
	}
	if c.PoisonInterval < 10*time.Millisecond || c.PoisonInterval > time.Hour {
		errs = append(errs, fmt.Errorf("POISON_INTERVAL must be in 10ms..1h, got %s", c.PoisonInterval))
	}
	if c.ShutdownGrace <= 0 {
		errs = append(errs, fmt.Errorf("SHUTDOWN_GRACE must be > 0, got %s", c.ShutdownGrace))
	}
	return errors.Join(errs...)
}

// parsePrefixes parses AGGREGATE_TOPIC_PREFIXES: type=prefix items, each
// type one of types and named once.
func parsePrefixes(items, types []string) (map[string]string, error) {
	out := map[string]string{}
	var errs []error
	for _, it := range items {
		typ, prefix, ok := strings.Cut(it, "=")
		switch {
		case !ok || typ == "" || prefix == "":
			errs = append(errs, fmt.Errorf("AGGREGATE_TOPIC_PREFIXES: %q is not type=prefix", it))
		case !slices.Contains(types, typ):
			errs = append(errs, fmt.Errorf("AGGREGATE_TOPIC_PREFIXES: %q is not one of AGGREGATE_TYPES", typ))
		case !namePart.MatchString(prefix):
			errs = append(errs, fmt.Errorf("AGGREGATE_TOPIC_PREFIXES: prefix %q: use letters, digits, '.', '_' or '-'", prefix))
		case out[typ] != "":
			errs = append(errs, fmt.Errorf("AGGREGATE_TOPIC_PREFIXES: %q named twice", typ))
		default:
			out[typ] = prefix
		}
	}
	return out, errors.Join(errs...)
}
