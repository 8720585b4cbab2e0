package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"cqrsflow/internal/cli"
	"cqrsflow/internal/config"
	"cqrsflow/internal/envelope"
	"cqrsflow/internal/esindex"
	"cqrsflow/internal/projector"
)

// aggregateList is --aggregate, repeatable.
type aggregateList []string

func (l *aggregateList) String() string     { return strings.Join(*l, ",") }
func (l *aggregateList) Set(s string) error { *l = append(*l, s); return nil }

// maxVerifyIDs bounds --aggregate: more belong in --sample or --all.
const maxVerifyIDs = 10000

func (l aggregateList) validate() error {
	if len(l) > maxVerifyIDs {
		return fmt.Errorf("--aggregate: %d given, at most %d (use --sample or --all)", len(l), maxVerifyIDs)
	}
	for _, id := range l {
		switch {
		case id == "":
			return errors.New("--aggregate: empty")
		case len(id) > envelope.MaxAggregateIDBytes:
			return fmt.Errorf("--aggregate: %d bytes, longer than the %d an aggregate id can have", len(id), envelope.MaxAggregateIDBytes)
		}
	}
	return nil
}

// parseSince reads --since: an RFC 3339 time, or a duration meaning that
// long ago.
func parseSince(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		if t.After(now) {
			return time.Time{}, fmt.Errorf("--since: %s is in the future", s)
		}
		return t, nil
	}
	if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("--since: %q is neither an RFC 3339 time (2026-01-02T15:04:05Z) nor a positive duration (24h)", cell(s))
}

// cell shortens a hostile value for an error message.
func cell(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

// pgSettings is the event store connection of the commands that verify.
type pgSettings struct{ URL string }

func (p *pgSettings) register(s *config.Set) {
	s.URL(&p.URL, "POSTGRES_URL", config.DefaultPostgresURL, "PostgreSQL URL of the event store (read-only: verification)")
}

func (p *pgSettings) validate() error {
	if p.URL == "" {
		return errors.New("POSTGRES_URL is required")
	}
	if _, err := pgxpool.ParseConfig(p.URL); err != nil {
		return errors.New("POSTGRES_URL: not a valid PostgreSQL URL")
	}
	return nil
}

// pool opens a small pool: verification reads, a few queries at a time.
func (p *pgSettings) pool(ctx context.Context) (*pgxpool.Pool, error) {
	pcfg, err := pgxpool.ParseConfig(p.URL)
	if err != nil {
		return nil, errors.New("POSTGRES_URL: not a valid PostgreSQL URL")
	}
	pcfg.MaxConns = 4
	if pcfg.ConnConfig.ConnectTimeout == 0 || pcfg.ConnConfig.ConnectTimeout > 5*time.Second {
		pcfg.ConnConfig.ConnectTimeout = 5 * time.Second
	}
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, fmt.Errorf("opening PostgreSQL pool: %w", err)
	}
	return pool, nil
}

// verifySettings are the continuous verification's settings of `run`.
type verifySettings struct {
	pg     pgSettings
	Rate   int
	Margin time.Duration
	Window time.Duration
}

func (v *verifySettings) register(s *config.Set) {
	v.pg.register(s)
	s.Int(&v.Rate, "VERIFY_RATE", projector.DefaultVerifyRate, "aggregates per second each worker verifies against the event store (0: off)")
	s.Duration(&v.Margin, "VERIFY_MARGIN", projector.DefaultVerifyMargin, "added to the sync lag: events younger than both are in flight, not drift")
	s.Duration(&v.Window, "VERIFY_WINDOW", projector.DefaultVerifyWindow, "how long a drifted aggregate counts in cqrsflow_projection_drift_aggregates")
}

func (v *verifySettings) validate() error {
	var errs []error
	if v.Rate < 0 || v.Rate > 10000 {
		errs = append(errs, fmt.Errorf("VERIFY_RATE: %d not in 0..10000", v.Rate))
	}
	if v.Margin <= 0 {
		errs = append(errs, errors.New("VERIFY_MARGIN: must be > 0"))
	}
	if v.Window <= 0 {
		errs = append(errs, errors.New("VERIFY_WINDOW: must be > 0"))
	}
	if v.Rate > 0 {
		errs = append(errs, v.pg.validate())
	}
	return errors.Join(errs...)
}

// errDrift ends a verify run that found drift it did not repair: exit 1.
var errDrift = errors.New("drift")

func setupVerify(s *config.Set) cli.Action {
	var (
		c                cfg
		pg               pgSettings
		name, since      string
		ids              aggregateList
		sample, maxDiffs int
		pageRows         int
		all, asJSON      bool
		repair, delUnexp bool
		margin, timeout  time.Duration
		p                projector.Projection
		opts             projector.VerifyOptions
	)
	c.register(s)
	pg.register(s)
	checkProjection := projectionFlag(s, &name, &p)
	fs := s.FlagSet()
	fs.Var(&ids, "aggregate", "verify this aggregate id (repeatable)")
	fs.IntVar(&sample, "sample", 0, "verify N aggregates picked at random")
	fs.BoolVar(&all, "all", false, "verify every aggregate (streamed: memory stays bounded)")
	fs.StringVar(&since, "since", "", "only aggregates whose latest event was recorded since: RFC 3339 time, or a duration ago (24h)")
	fs.DurationVar(&margin, "margin", projector.DefaultVerifyMargin, "added to the sync lag: events younger than both are in flight, not drift")
	fs.BoolVar(&asJSON, "json", false, "print the report as JSON")
	fs.BoolVar(&repair, "repair", false, "write the expected documents of drifted aggregates (versioned: never over a newer one)")
	fs.BoolVar(&delUnexp, "delete-unexpected", false, "with --repair: also delete documents that have no events")
	fs.IntVar(&maxDiffs, "max-diffs", 20, "differences listed at most")
	fs.IntVar(&pageRows, "page-rows", projector.DefaultVerifyPageRows, "events read (and held) at once")
	fs.DurationVar(&timeout, "timeout", 0, "give up after this long (0: no limit)")
	return cli.Action{
		Quiet: true,
		Validate: func() error {
			_, err := c.validate()
			errs := []error{err, pg.validate(), checkProjection(), ids.validate()}
			set := map[string]bool{}
			fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
			n := 0
			for _, sel := range []bool{len(ids) > 0 || set["aggregate"], set["sample"], all} {
				if sel {
					n++
				}
			}
			if n != 1 {
				errs = append(errs, errors.New("verify: give exactly one of --aggregate, --sample N and --all"))
			}
			if set["sample"] && sample < 1 {
				errs = append(errs, fmt.Errorf("--sample: %d, want >= 1", sample))
			}
			if since != "" {
				t, err := parseSince(since, time.Now())
				errs = append(errs, err)
				opts.Since = t
				if len(ids) > 0 {
					errs = append(errs, errors.New("--since: only with --sample or --all"))
				}
			}
			if margin < 0 {
				errs = append(errs, errors.New("--margin: negative"))
			}
			if delUnexp && !repair {
				errs = append(errs, errors.New("--delete-unexpected: only with --repair"))
			}
			if maxDiffs < 0 || maxDiffs > 10000 {
				errs = append(errs, fmt.Errorf("--max-diffs: %d not in 0..10000", maxDiffs))
			}
			if pageRows < 1 || pageRows > 100000 {
				errs = append(errs, fmt.Errorf("--page-rows: %d not in 1..100000", pageRows))
			}
			if timeout < 0 {
				errs = append(errs, errors.New("--timeout: negative"))
			}
			return errors.Join(errs...)
		},
		Run: func(ctx context.Context, env cli.Env) error {
			if timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, timeout)
				defer cancel()
			}
			opts.IDs, opts.Sample, opts.All = ids, sample, all
			opts.Margin, opts.Repair, opts.DeleteUnexpected = margin, repair, delUnexp
			opts.MaxDiffs, opts.PageRows, opts.Progress = maxDiffs, pageRows, env.Stderr
			return verify(ctx, c, pg, p, opts, asJSON, env)
		},
	}
}

func verify(ctx context.Context, c cfg, pg pgSettings, p projector.Projection, opts projector.VerifyOptions, asJSON bool, env cli.Env) error {
	es, err := c.Elasticsearch.Client()
	if err != nil {
		return err
	}
	conn, err := c.Kafka.Opts()
	if err != nil {
		return err
	}
	pool, err := pg.pool(ctx)
	if err != nil {
		return err
	}
	defer pool.Close()
	opts.Conn = conn
	opts.Index = esindex.AliasName(c.IndexPrefix, p.Name())
	opts.Topic = envelope.Topic(c.TopicPrefix, p.AggregateType())
	opts.Group = projector.GroupName(c.GroupPrefix, p.Name(), 0)
	rep, err := projector.Verify(ctx, opts, p, es, projector.NewEventStore(pool, p.AggregateType()), env.Log)
	if err != nil {
		return err
	}
	if err := projector.WriteVerify(env.Stdout, rep, asJSON); err != nil {
		return err
	}
	if n := rep.Unrepaired(); n > 0 {
		return fmt.Errorf("%w: %d aggregates of %s differ from their events (docs/operations.md#cqrsflowprojectiondrift)", errDrift, n, p.Name())
	}
	return nil
}
