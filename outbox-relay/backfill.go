package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"cqrsflow/internal/cli"
	"cqrsflow/internal/config"
	"cqrsflow/internal/envelope"
	"cqrsflow/internal/kafka"
	"cqrsflow/internal/migrations"
	"cqrsflow/internal/obs"
	"cqrsflow/internal/relay"
	"cqrsflow/internal/topics"
)

// backfillCommand republishes stored events (relay.Backfill).
var backfillCommand = &cli.Command{
	Name:    "backfill",
	Summary: "republish stored events of an aggregate type to its topic (resumable, safe beside the live relay)",
	Setup:   setupBackfill,
}

// runName is a backfill run's name: it keys the recorded progress.
var runName = regexp.MustCompile(`^[a-zA-Z0-9._-]{1,100}$`)

// maxAggregates bounds --aggregate: a longer list belongs in a selection
// by position or time.
const maxAggregates = 10000

// stringList is a repeatable string flag.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

// backfillCfg is the backfill command's configuration.
type backfillCfg struct {
	PostgresURL      string
	Kafka            kafka.Settings
	TopicPrefix      string
	AggregateTypes   []string
	MetricsAddr      string
	TopicReplication int
	DeliveryTimeout  time.Duration
	Migrate          bool

	run, aggregateType, fromTime string
	aggregates                   stringList
	fromPosition                 int64
	batchSize, partitions        int
	restart                      bool
	fs                           *flag.FlagSet
	sel                          relay.BackfillSelection
}

func setupBackfill(s *config.Set) cli.Action {
	var c backfillCfg
	s.URL(&c.PostgresURL, "POSTGRES_URL", config.DefaultPostgresURL, "PostgreSQL URL (may carry search_path)")
	c.Kafka.Register(s)
	s.String(&c.TopicPrefix, "TOPIC_PREFIX", envelope.DefaultTopicPrefix, "publish to <prefix>.<aggregate_type>.events")
	s.List(&c.AggregateTypes, "AGGREGATE_TYPES", "product,order", "the aggregate types there are (--aggregate-type must be one)")
	s.Int(&c.TopicReplication, "TOPIC_REPLICATION_FACTOR", int(topics.DefaultReplicationFactor), "replication factor of a topic --partitions creates")
	s.String(&c.MetricsAddr, "BACKFILL_METRICS_ADDR", "", "listen address of /metrics while the backfill runs (empty: none)")
	s.Duration(&c.DeliveryTimeout, "DELIVERY_TIMEOUT", 30*time.Second, "how long a record may wait for Kafka before the backfill fails (it resumes from its last whole batch)")
	s.Bool(&c.Migrate, "MIGRATE", true, "apply database migrations first (backfill_progress)")
	c.fs = s.FlagSet()
	c.fs.StringVar(&c.run, "run", "", "name of this backfill: its progress is recorded under it, and running it again resumes (required)")
	c.fs.StringVar(&c.aggregateType, "aggregate-type", "", "aggregate type whose events to publish (required)")
	c.fs.Var(&c.aggregates, "aggregate", "only the aggregate with this id (repeatable)")
	c.fs.Int64Var(&c.fromPosition, "from-position", 0, "only events at or above this global position")
	c.fs.StringVar(&c.fromTime, "from-time", "", "only events recorded at or after this RFC 3339 time")
	c.fs.IntVar(&c.batchSize, "batch-size", 1000, "events per batch (progress is recorded after each)")
	c.fs.IntVar(&c.partitions, "partitions", 0, "create the topic with this many partitions if it does not exist (0: it must exist)")
	c.fs.BoolVar(&c.restart, "restart", false, "forget the run's recorded progress and start from the selection's beginning")
	return cli.Action{Validate: c.validate, Run: c.runBackfill}
}

// validate reports every problem at once.
func (c *backfillCfg) validate() error {
	var errs []error
	if c.PostgresURL == "" {
		errs = append(errs, errors.New("POSTGRES_URL is empty"))
	}
	errs = append(errs, c.Kafka.Validate())
	if !namePart.MatchString(c.TopicPrefix) {
		errs = append(errs, fmt.Errorf("TOPIC_PREFIX %q: use letters, digits, '.', '_' or '-'", c.TopicPrefix))
	}
	if !runName.MatchString(c.run) {
		errs = append(errs, fmt.Errorf("--run: want 1..100 letters, digits, '.', '_' or '-', got %q", truncate(c.run, 40)))
	}
	switch {
	case c.aggregateType == "":
		errs = append(errs, errors.New("--aggregate-type is required"))
	case !slices.Contains(c.AggregateTypes, c.aggregateType):
		errs = append(errs, fmt.Errorf("--aggregate-type: %q is not an aggregate type (AGGREGATE_TYPES: %s)", truncate(c.aggregateType, 40), strings.Join(c.AggregateTypes, ", ")))
	}
	if len(c.aggregates) > maxAggregates {
		errs = append(errs, fmt.Errorf("--aggregate: at most %d, got %d (select by --from-position or --from-time instead)", maxAggregates, len(c.aggregates)))
	}
	for _, a := range c.aggregates {
		if strings.TrimSpace(a) == "" || len(a) > maxAggregateIDBytes || !utf8.ValidString(a) {
			errs = append(errs, fmt.Errorf("--aggregate: want an aggregate id (1..%d bytes of UTF-8), got %q", maxAggregateIDBytes, truncate(a, 40)))
			break
		}
	}
	if c.fromPosition < 0 {
		errs = append(errs, fmt.Errorf("--from-position must be >= 0, got %d", c.fromPosition))
	}
	c.sel = relay.BackfillSelection{AggregateType: c.aggregateType, AggregateIDs: c.aggregates, FromPosition: c.fromPosition}
	if c.fromTime != "" {
		t, err := time.Parse(time.RFC3339Nano, c.fromTime)
		if err != nil {
			errs = append(errs, fmt.Errorf("--from-time: %q is not an RFC 3339 time (2006-01-02T15:04:05Z)", truncate(c.fromTime, 40)))
		}
		c.sel.FromTime = t
	}
	if c.batchSize < 1 || c.batchSize > 50000 {
		errs = append(errs, fmt.Errorf("--batch-size must be in 1..50000, got %d", c.batchSize))
	}
	if c.partitions < 0 || c.partitions > math.MaxInt16 {
		errs = append(errs, fmt.Errorf("--partitions must be in 0..%d, got %d", math.MaxInt16, c.partitions))
	}
	if c.TopicReplication < 1 || c.TopicReplication > math.MaxInt16 {
		errs = append(errs, fmt.Errorf("TOPIC_REPLICATION_FACTOR must be in 1..%d, got %d", math.MaxInt16, c.TopicReplication))
	}
	if c.DeliveryTimeout < 0 {
		errs = append(errs, fmt.Errorf("DELIVERY_TIMEOUT must be >= 0, got %s", c.DeliveryTimeout))
	}
	return errors.Join(errs...)
}

func (c *backfillCfg) runBackfill(ctx context.Context, env cli.Env) error {
	log := env.Log.With("component", "backfill")
	if c.Migrate {
		if err := migrations.Up(ctx, c.PostgresURL); err != nil {
			return err
		}
	}
	pool, err := pgxpool.New(ctx, c.PostgresURL)
	if err != nil {
		return fmt.Errorf("postgres pool: %w", err)
	}
	defer pool.Close()
	c.Kafka.LogWarnings(log)
	kc, err := c.Kafka.NewClient(relay.ProducerOpts(c.Kafka.Brokers, c.DeliveryTimeout)...)
	if err != nil {
		return err
	}
	defer kc.Close()
	topic := envelope.Topic(c.TopicPrefix, c.aggregateType)
	if err := c.ensureTopic(ctx, kc, topic, log); err != nil {
		return err
	}
	reg := obs.NewRegistry()
	m := relay.NewBackfillMetrics(reg)
	if c.MetricsAddr != "" {
		sctx, stop := context.WithCancel(context.WithoutCancel(ctx))
		defer stop()
		h := obs.NewHealth(map[string]obs.CheckFunc{
			"postgres": func(ctx context.Context) error { return pool.Ping(ctx) },
			"kafka":    func(ctx context.Context) error { return kc.Ping(ctx) },
		})
		served := make(chan error, 1)
		go func() { served <- obs.Serve(sctx, c.MetricsAddr, h.Mux(reg), 2*time.Second, log) }()
		defer func() { stop(); <-served }()
	}
	res, err := relay.Backfill(ctx, pool, kc, m, relay.BackfillOptions{
		Run: c.run, Topic: topic, Selection: c.sel, BatchSize: c.batchSize, Restart: c.restart, Progress: env.Stdout,
	}, log)
	if errors.Is(err, relay.ErrBackfillMismatch) {
		return cli.UsageError(err)
	}
	if err != nil {
		fmt.Fprintf(env.Stdout, "backfill %s: stopped at position %d (%d published now); run it again to resume\n", c.run, res.Position, res.Published)
		return err
	}
	log.Info("backfill finished", "run", c.run, "topic", topic, "published", res.Published, "run_total", res.Total, "position", res.Position)
	return nil
}

// ensureTopic refuses a topic that does not exist, unless --partitions
// says to create it: a producer to a missing topic would have the broker
// create it with its own defaults (partitions, retention), silently. With
// --partitions, an existing topic must have that many.
func (c *backfillCfg) ensureTopic(ctx context.Context, kc *kgo.Client, topic string, log *slog.Logger) error {
	adm := kadm.NewClient(kc)
	if c.partitions > 0 {
		spec := topics.Spec{Name: topic, Partitions: int32(c.partitions), ReplicationFactor: int16(c.TopicReplication),
			Configs: topics.InfiniteRetention(), Log: log}
		if err := topics.Ensure(ctx, adm, spec); err != nil {
			return fmt.Errorf("ensuring topic %s: %w", topic, err)
		}
	}
	var d kadm.TopicDetail
	ok := false
	if c.partitions > 0 {
		// Just ensured: a topic created a moment ago may not be in the
		// answering broker's metadata yet; DescribeExisting waits for it.
		var err error
		if d, err = topics.DescribeExisting(ctx, adm, topic); err != nil {
			return err
		}
		ok = true
	} else {
		details, err := adm.ListTopics(ctx, topic)
		if err != nil {
			return fmt.Errorf("describing topic %s: %w", topic, err)
		}
		d, ok = details[topic]
		ok = ok && d.Err == nil
	}
	if !ok {
		return cli.UsageError(fmt.Errorf("topic %s does not exist: check --aggregate-type and TOPIC_PREFIX, or pass --partitions N to create it", topic))
	}
	if c.partitions > 0 && len(d.Partitions) != c.partitions {
		// A repartition into an existing topic of the wrong size would
		// spread the keys differently than asked, for good.
		return cli.UsageError(fmt.Errorf("topic %s exists with %d partitions, not the %d of --partitions", topic, len(d.Partitions), c.partitions))
	}
	log.Info("publishing to topic", "topic", topic, "partitions", len(d.Partitions))
	return nil
}
