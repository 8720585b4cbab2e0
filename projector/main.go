// Command projector keeps the Elasticsearch read models in sync with the
// event topics, and replays or rebuilds them:
//
//	projector [run] [flags]                       consume (default)
//	projector replay --projection P (--to earliest|latest|<RFC3339> | --offsets t:p=o,…) [--wait 30s]
//	projector rebuild --projection P --version N [--drop-old]
//	projector dlq list|show|redrive|skip --projection P [...]   dead letters and quarantined aggregates
//	projector verify --projection P (--aggregate ID… | --sample N | --all) [--since T] [--json] [--repair]
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/elastic/go-elasticsearch/v8"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kadm"

	"cqrsflow/internal/backoff"
	"cqrsflow/internal/catalog"
	"cqrsflow/internal/cli"
	"cqrsflow/internal/config"
	"cqrsflow/internal/envelope"
	"cqrsflow/internal/esindex"
	"cqrsflow/internal/kafka"
	"cqrsflow/internal/obs"
	"cqrsflow/internal/projector"
	"cqrsflow/internal/tracing"
)

var program = &cli.Program{
	Name:    "projector",
	Summary: "keeps the Elasticsearch read models in sync with the event topics",
	Commands: []*cli.Command{
		{Name: "run", Summary: "consume the event topics into the read models", Default: true, Setup: func(s *config.Set) cli.Action {
			var c cfg
			var v verifySettings
			c.register(s)
			v.register(s)
			c.Debug.Register(s)
			var projs []projector.Projection
			return cli.Action{
				Validate: func() (err error) {
					projs, err = c.validate()
					return errors.Join(err, v.validate(), c.Debug.Validate("METRICS_ADDR", c.MetricsAddr))
				},
				Run: func(ctx context.Context, env cli.Env) error { return consume(ctx, c, v, projs, env.Log) },
			}
		}},
		{Name: "replay", Summary: "reset a projection's consumer group offsets (stop its projectors first)", Setup: setupReplay},
		{Name: "rebuild", Summary: "build a new index version from the earliest offsets and swap the alias", Setup: setupRebuild},
		{Name: "verify", Summary: "check the read model against the event store (fold each aggregate's events, compare); --repair rewrites what drifted", Setup: setupVerify},
		dlqCommand,
	},
}

func main() { program.Main() }

// cfg is the projector's configuration: env vars with flags of the same
// meaning, each registered once with its default.
type cfg struct {
	Kafka           kafka.Settings
	Elasticsearch   esindex.Settings
	TopicPrefix     string
	Projections     []string
	GroupPrefix     string
	IndexPrefix     string
	MetricsAddr     string
	Debug           obs.Debug // DEBUG_ADDR: pprof on loopback ("" = off)
	BatchMaxRecords int
	BatchMaxBytes   int
	DocCacheEntries int
	FlushInterval   time.Duration
	LagInterval     time.Duration
	SessionTimeout  time.Duration
	MaxParked       int
	ParkTimeout     time.Duration
}

func (c *cfg) register(s *config.Set) {
	c.Kafka.Register(s)
	c.Elasticsearch.Register(s)
	s.String(&c.TopicPrefix, "TOPIC_PREFIX", envelope.DefaultTopicPrefix, "event topic prefix")
	s.List(&c.Projections, "PROJECTIONS", strings.Join(catalog.ProjectionNames(), ","), "projections to run, comma-separated (internal/catalog registers them)")
	s.String(&c.GroupPrefix, "GROUP_PREFIX", "cqrsflow-projector", "consumer group prefix (<prefix>-<projection>)")
	s.String(&c.IndexPrefix, "INDEX_PREFIX", "", "Elasticsearch index/alias name prefix")
	s.String(&c.MetricsAddr, "METRICS_ADDR", "127.0.0.1:9102", "listen address for /healthz, /readyz, /metrics")
	s.Int(&c.BatchMaxRecords, "BATCH_MAX_RECORDS", projector.DefaultBatchMaxRecords, "max records per batch")
	s.Int(&c.BatchMaxBytes, "BATCH_MAX_BYTES", projector.DefaultBatchMaxBytes, "max bytes of records (keys, values, headers) per batch; bounds the worker's memory")
	s.Int(&c.DocCacheEntries, "DOC_CACHE_ENTRIES", projector.DefaultDocCacheEntries, "documents kept in memory to skip Elasticsearch reads of recently written aggregates")
	s.Duration(&c.FlushInterval, "FLUSH_INTERVAL", projector.DefaultFlushInterval, "how long a non-full batch waits for more records")
	s.Duration(&c.LagInterval, "LAG_INTERVAL", projector.DefaultLagInterval, "how often consumer and sync lag are computed")
	s.Duration(&c.SessionTimeout, "SESSION_TIMEOUT", projector.DefaultSessionTimeout, "consumer group session timeout (failover time after a crash)")
	s.Int(&c.MaxParked, "MAX_PARKED_EVENTS", projector.DefaultMaxParked, "events held in memory behind version gaps; at the bound the oldest gaps are quarantined")
	s.Duration(&c.ParkTimeout, "PARK_TIMEOUT", projector.DefaultParkTimeout, "how long a version gap may hold an aggregate before it is quarantined")
}

func (c *cfg) validate() ([]projector.Projection, error) {
	var errs []error
	var projs []projector.Projection
	if len(c.Projections) == 0 {
		errs = append(errs, errors.New("PROJECTIONS: empty"))
	}
	for _, n := range c.Projections {
		p, err := catalog.Projection(n)
		if err != nil {
			errs = append(errs, fmt.Errorf("PROJECTIONS: %w", err))
			continue
		}
		projs = append(projs, p)
	}
	errs = append(errs, c.Kafka.Validate(), c.Elasticsearch.Validate())
	if c.BatchMaxRecords < 1 || c.BatchMaxRecords > 100000 {
		errs = append(errs, fmt.Errorf("BATCH_MAX_RECORDS: %d not in 1..100000", c.BatchMaxRecords))
	}
	if c.BatchMaxBytes < 64<<10 || c.BatchMaxBytes > 256<<20 {
		errs = append(errs, fmt.Errorf("BATCH_MAX_BYTES: %d not in 65536..268435456", c.BatchMaxBytes))
	}
	if c.DocCacheEntries < 1 || c.DocCacheEntries > 10_000_000 {
		errs = append(errs, fmt.Errorf("DOC_CACHE_ENTRIES: %d not in 1..10000000", c.DocCacheEntries))
	}
	if c.FlushInterval < 0 {
		errs = append(errs, errors.New("FLUSH_INTERVAL: negative"))
	}
	if c.MaxParked < 1 {
		errs = append(errs, fmt.Errorf("MAX_PARKED_EVENTS: %d, want >= 1", c.MaxParked))
	}
	if c.SessionTimeout < 6*time.Second || c.SessionTimeout > 5*time.Minute {
		errs = append(errs, fmt.Errorf("SESSION_TIMEOUT: %s not in 6s..5m (broker group.min/max.session.timeout.ms)", c.SessionTimeout))
	}
	if c.LagInterval <= 0 {
		errs = append(errs, errors.New("LAG_INTERVAL: must be > 0"))
	}
	if c.ParkTimeout <= 0 {
		errs = append(errs, errors.New("PARK_TIMEOUT: must be > 0"))
	}
	return projs, errors.Join(errs...)
}

// projectionFlag registers --projection for the admin commands and
// returns a validator that resolves it.
func projectionFlag(s *config.Set, name *string, p *projector.Projection) func() error {
	s.FlagSet().StringVar(name, "projection", "", "projection ("+strings.Join(catalog.ProjectionNames(), ", ")+")")
	return func() error {
		var err error
		if *p, err = catalog.Projection(*name); err != nil {
			return fmt.Errorf("--projection: %w", err)
		}
		return nil
	}
}

func (c *cfg) runnerConfig(p projector.Projection) (projector.Config, error) {
	opts, err := c.Kafka.Opts()
	return projector.Config{
		Brokers:         c.Kafka.Brokers,
		ClientOpts:      opts,
		Group:           projector.GroupName(c.GroupPrefix, p.Name(), 0),
		Topic:           envelope.Topic(c.TopicPrefix, p.AggregateType()),
		BatchMaxRecords: c.BatchMaxRecords,
		BatchMaxBytes:   c.BatchMaxBytes,
		DocCacheEntries: c.DocCacheEntries,
		FlushInterval:   c.FlushInterval,
		LagInterval:     c.LagInterval,
		SessionTimeout:  c.SessionTimeout,
		MaxParked:       c.MaxParked,
		ParkTimeout:     c.ParkTimeout,
	}, err
}

func setupReplay(s *config.Set) cli.Action {
	var c cfg
	c.register(s)
	var (
		name, to, offsets string
		wait              time.Duration
		p                 projector.Projection
	)
	checkProjection := projectionFlag(s, &name, &p)
	fs := s.FlagSet()
	fs.StringVar(&to, "to", "", "earliest | latest | RFC 3339 timestamp")
	fs.StringVar(&offsets, "offsets", "", "explicit offsets topic:partition=offset,…")
	fs.DurationVar(&wait, "wait", 0, "wait up to this long for the group to have no live members")
	return cli.Action{
		Validate: func() error {
			_, err := c.validate()
			errs := []error{err, checkProjection()}
			if (to == "") == (offsets == "") {
				errs = append(errs, errors.New("replay: give exactly one of --to and --offsets"))
			}
			return errors.Join(errs...)
		},
		Run: func(ctx context.Context, env cli.Env) error { return replay(ctx, c, p, to, offsets, wait, env.Stdout) },
	}
}

func setupRebuild(s *config.Set) cli.Action {
	var c cfg
	c.register(s)
	var (
		name    string
		version int
		dropOld bool
		p       projector.Projection
	)
	checkProjection := projectionFlag(s, &name, &p)
	fs := s.FlagSet()
	fs.IntVar(&version, "version", 0, "new index version N (builds <projection>_vN)")
	fs.BoolVar(&dropOld, "drop-old", false, "delete the previous index after the alias swap")
	return cli.Action{
		Validate: func() error {
			_, err := c.validate()
			errs := []error{err, checkProjection()}
			if version < 2 {
				errs = append(errs, errors.New("rebuild: --version must be >= 2 (v1 is created by the live projector)"))
			}
			return errors.Join(errs...)
		},
		Run: func(ctx context.Context, env cli.Env) error {
			es, err := c.Elasticsearch.Client()
			if err != nil {
				return err
			}
			return rebuild(ctx, c, p, es, version, dropOld, env)
		},
	}
}

func consume(ctx context.Context, c cfg, v verifySettings, projs []projector.Projection, log *slog.Logger) error {
	applyGCDefault(os.LookupEnv, log)
	c.Kafka.LogWarnings(log)
	c.Elasticsearch.LogWarnings(log)
	es, err := c.Elasticsearch.Client()
	if err != nil {
		return err
	}
	tp, stopTracing, err := tracing.Start(ctx, "cqrsflow-projector", log)
	if err != nil {
		return err
	}
	defer stopTracing()
	var pool *pgxpool.Pool
	if v.Rate > 0 {
		// Connects on first use: PostgreSQL being down only pauses the
		// verification, never the projection.
		if pool, err = v.pg.pool(ctx); err != nil {
			return err
		}
		defer pool.Close()
	}
	reg := obs.NewRegistry()
	m := projector.NewMetrics(reg)
	// Each projection's worker prepares its read model (retrying while
	// Elasticsearch is unreachable: a projector started before its
	// dependencies waits for them instead of exiting), then consumes.
	// Until every worker consumes (past its topic set-up, which retries
	// while Kafka is unreachable), /readyz says "starting".
	st := &startup{runners: make([]atomic.Pointer[projector.Runner], len(projs))}
	h := obs.NewHealth(map[string]obs.CheckFunc{
		"elasticsearch": func(ctx context.Context) error { return esindex.Ping(ctx, es) },
		"kafka": func(ctx context.Context) error {
			r := st.runners[0].Load()
			if r == nil {
				return errStarting
			}
			return r.Ping(ctx)
		},
		"started": st.check,
	})
	workers := make([]func(context.Context) error, len(projs), len(projs)+1)
	for i, p := range projs {
		workers[i] = func(ctx context.Context) error {
			alias, err := prepareReadModel(ctx, es, c.IndexPrefix, p, log)
			if err != nil {
				if backoff.IsPermanent(err) {
					return fmt.Errorf("preparing the %s read model: %w", p.Name(), err)
				}
				return nil // stopped while waiting
			}
			rc, err := c.runnerConfig(p)
			if err != nil {
				return err
			}
			rc.Index = alias
			rc.Tracing = tp
			if pool != nil {
				rc.Verify = projector.VerifyConfig{Events: projector.NewEventStore(pool, p.AggregateType()),
					Rate: v.Rate, Margin: v.Margin, Window: v.Window}
			}
			r, err := projector.New(rc, p, es, m, log)
			if err != nil {
				return err
			}
			st.runners[i].Store(r)
			return r.Run(ctx)
		}
	}
	workers = append(workers, obs.Debug{Addr: c.Debug.Addr, Log: log}.Run)
	return obs.Service{Addr: c.MetricsAddr, Handler: h.Mux(reg), Health: h, Grace: 5 * time.Second, Log: log}.Run(ctx, workers...)
}

// errStarting is the readiness answer before every projection consumes.
var errStarting = errors.New("starting: preparing the read models and topics")

// startup tracks which projections consume: runners[i] is set once
// projection i's runner exists, and consumes once past its set-up.
type startup struct {
	runners []atomic.Pointer[projector.Runner]
}

func (s *startup) check(context.Context) error {
	for i := range s.runners {
		if r := s.runners[i].Load(); r == nil || !r.Consuming() {
			return errStarting
		}
	}
	return nil
}

// prepareReadModel is projector.EnsureReadModel retried with backoff
// while Elasticsearch is unavailable. A refusal (a mapping conflict, a
// missing privilege: esindex.ErrRejected) does not heal by waiting: it
// is returned at once, marked backoff.Permanent. Any other error means
// ctx ended while waiting.
func prepareReadModel(ctx context.Context, es *elasticsearch.Client, indexPrefix string, p projector.Projection, log *slog.Logger) (string, error) {
	var alias string
	err := backoff.RetryStartup(ctx, log, "preparing the read model", func(ctx context.Context) error {
		a, err := projector.EnsureReadModel(ctx, es, indexPrefix, p)
		if errors.Is(err, esindex.ErrRejected) {
			return backoff.Permanent(err)
		}
		alias = a
		return err
	}, "projection", p.Name())
	return alias, err
}

func kafkaAdmin(c cfg) (*kadm.Client, func(), error) {
	cl, err := c.Kafka.NewClient()
	if err != nil {
		return nil, nil, err
	}
	return kadm.NewClient(cl), cl.Close, nil
}

func replay(ctx context.Context, c cfg, p projector.Projection, to, offsets string, wait time.Duration, out io.Writer) error {
	target := projector.ReplayTarget{To: to}
	if offsets != "" {
		o, err := projector.ParseOffsets(offsets)
		if err != nil {
			return err
		}
		target.Offsets = o
	}
	adm, closeFn, err := kafkaAdmin(c)
	if err != nil {
		return err
	}
	defer closeFn()
	group := projector.GroupName(c.GroupPrefix, p.Name(), 0)
	topic := envelope.Topic(c.TopicPrefix, p.AggregateType())
	offs, err := projector.Replay(ctx, adm, group, topic, target, wait)
	if err != nil {
		return err
	}
	var lines []string
	offs.Each(func(o kadm.Offset) { lines = append(lines, fmt.Sprintf("  %s:%d=%d", o.Topic, o.Partition, o.At)) })
	slices.Sort(lines)
	fmt.Fprintf(out, "group %s reset:\n", group)
	for _, l := range lines {
		fmt.Fprintln(out, l)
	}
	return nil
}

func rebuild(ctx context.Context, c cfg, p projector.Projection, es *elasticsearch.Client, version int, dropOld bool, env cli.Env) error {
	adm, closeFn, err := kafkaAdmin(c)
	if err != nil {
		return err
	}
	defer closeFn()
	rc, err := c.runnerConfig(p)
	if err != nil {
		return err
	}
	return projector.Rebuild(ctx, projector.RebuildOptions{
		Runner:      rc,
		GroupPrefix: c.GroupPrefix,
		IndexPrefix: c.IndexPrefix,
		Version:     version,
		DropOld:     dropOld,
		Progress:    env.Stdout,
	}, p, es, adm, env.Log)
}
