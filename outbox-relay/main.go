// Command outbox-relay publishes the transactional outbox to Kafka: see
// internal/relay for the guarantees. Several instances may run at once;
// they share the outbox's shards through leases.
//
//	outbox-relay [run] [flags]                                      publish (default)
//	outbox-relay dead list [--aggregate-type T] [--aggregate ID] [--json]
//	outbox-relay dead retry (--id N ... | --aggregate ID | --all) [--aggregate-type T]
//	outbox-relay dead discard --id N [--yes]
//	outbox-relay backfill --run NAME --aggregate-type T [--aggregate ID ...] [--from-position N | --from-time T] [--partitions N] [--restart]
package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kadm"

	"cqrsflow/internal/backoff"
	"cqrsflow/internal/cli"
	"cqrsflow/internal/config"
	"cqrsflow/internal/migrations"
	"cqrsflow/internal/obs"
	"cqrsflow/internal/relay"
	"cqrsflow/internal/topics"
	"cqrsflow/internal/tracing"
)

var program = &cli.Program{
	Name:    "outbox-relay",
	Summary: "publishes the transactional outbox to Kafka",
	Commands: []*cli.Command{
		{Name: "run", Summary: "publish the outbox", Default: true, Setup: func(s *config.Set) cli.Action {
			var c cfg
			c.register(s)
			c.Debug.Register(s)
			return cli.Action{
				Validate: func() error {
					return errors.Join(c.validate(), c.Debug.Validate("METRICS_ADDR", c.MetricsAddr))
				},
				Run: func(ctx context.Context, env cli.Env) error { return runRelay(ctx, c, env) },
			}
		}},
		deadCommand,
		backfillCommand,
	},
}

func main() { program.Main() }

func runRelay(ctx context.Context, c cfg, env cli.Env) error {
	log := env.Log
	pcfg, err := pgxpool.ParseConfig(c.PostgresURL)
	if err != nil {
		return fmt.Errorf("POSTGRES_URL: %w", err)
	}
	// One connection per publish worker plus the lease and stats loops,
	// unless the URL sets pool_max_conns itself.
	if need := int32(c.Workers + 3); !strings.Contains(c.PostgresURL, "pool_max_conns") && pcfg.MaxConns < need {
		pcfg.MaxConns = need
	}
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return fmt.Errorf("postgres pool: %w", err)
	}
	defer pool.Close()
	c.Kafka.LogWarnings(log)
	newProducer := func() (relay.Producer, error) {
		return c.Kafka.NewClient(relay.ProducerOpts(c.Kafka.Brokers, c.DeliveryTimeout)...)
	}
	// A producer of its own for rows sent alone to confirm a refusal
	// (relay.Config.Probe), and for the readiness check; the relay makes
	// one per publish loop besides.
	probe, err := c.Kafka.NewClient(relay.ProducerOpts(c.Kafka.Brokers, c.DeliveryTimeout)...)
	if err != nil {
		return err
	}
	defer probe.Close()

	tp, stopTracing, err := tracing.Start(ctx, "cqrsflow-outbox-relay", log)
	if err != nil {
		return err
	}
	defer stopTracing()

	reg := obs.NewRegistry()
	health := obs.NewHealth(map[string]obs.CheckFunc{
		"postgres": func(ctx context.Context) error { return pool.Ping(ctx) },
		"kafka":    func(ctx context.Context) error { return probe.Ping(ctx) },
	})
	r, err := relay.New(relay.Config{
		ID: c.RelayID, TopicPrefix: c.TopicPrefix, TopicPrefixes: c.prefixes, BatchSize: c.BatchSize, Workers: c.Workers, PollInterval: c.PollInterval,
		Linger: c.Linger, RescanInterval: c.RescanInterval, LeaseTTL: c.LeaseTTL, ShutdownGrace: c.ShutdownGrace,
		PoisonAttempts: c.PoisonAttempts, PoisonInterval: c.PoisonInterval, Probe: probe, Tracing: tp,
	}, pool, newProducer, reg, log)
	if err != nil {
		return err
	}
	defer r.Close()
	publish := func(ctx context.Context) error {
		if c.Migrate {
			if err := backoff.RetryStartup(ctx, log, "applying migrations", func(ctx context.Context) error { return migrations.Up(ctx, c.PostgresURL) }); err != nil {
				return nil // cancelled while waiting
			}
		}
		var specs []topics.Spec
		for _, t := range c.AggregateTypes {
			prefix := c.TopicPrefix
			if p, ok := c.prefixes[t]; ok {
				prefix = p
			}
			specs = append(specs, topics.EventSpecs(prefix, []string{t}, int32(c.TopicPartitions), int16(c.TopicReplication), log)...)
		}
		for i := range specs {
			specs[i].MinInsyncReplicas = int16(c.TopicMinInsync)
		}
		ensure := func(ctx context.Context) error {
			err := topics.EnsureAll(ctx, kadm.NewClient(probe), specs)
			if errors.Is(err, topics.ErrMisconfigured) {
				return backoff.Permanent(err) // an operator must change the topic
			}
			return err
		}
		if err := backoff.RetryStartup(ctx, log, "ensuring topics", ensure); err != nil {
			if backoff.IsPermanent(err) {
				return err
			}
			return nil
		}
		return r.Run(ctx)
	}
	err = obs.Service{Addr: c.MetricsAddr, Handler: health.Mux(reg), Health: health, Grace: 5 * time.Second, Log: log}.Run(ctx,
		publish, obs.Debug{Addr: c.Debug.Addr, Log: log}.Run)
	log.Info("stopped", "err", err)
	return err
}
