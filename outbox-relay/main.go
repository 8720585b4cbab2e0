// Command outbox-relay publishes the transactional outbox to Kafka: see
// internal/relay for the guarantees. Several instances may run at once;
// they share the outbox's 64 shards through leases.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/errgroup"

	"cqrsflow/internal/config"
	"cqrsflow/internal/migrations"
	"cqrsflow/internal/obs"
	"cqrsflow/internal/relay"
	"cqrsflow/internal/topics"
)

func main() {
	if err := run(context.Background(), os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "outbox-relay:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	c, err := parseConfig(args)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	base := obs.NewLogger(obs.Stderr, c.LogLevel)
	log := base.With("component", "outbox-relay")
	log.Info("starting", "postgres_url", config.MaskURL(c.PostgresURL), "kafka_brokers", c.KafkaBrokers,
		"topic_prefix", c.TopicPrefix, "aggregate_types", c.AggregateTypes, "topic_partitions", c.TopicPartitions,
		"topic_replication_factor", c.TopicReplication, "metrics_addr", c.MetricsAddr, "relay_id", c.RelayID,
		"batch_size", c.BatchSize, "publish_workers", c.Workers, "poll_interval", c.PollInterval.String(), "wake_linger", c.Linger.String(), "rescan_interval", c.RescanInterval.String(), "lease_ttl", c.LeaseTTL.String())

	pcfg, err := pgxpool.ParseConfig(c.PostgresURL)
	if err != nil {
		return fmt.Errorf("postgres url: %w", err)
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
	kc, err := kgo.NewClient(relay.ProducerOpts(c.KafkaBrokers, c.DeliveryTimeout)...)
	if err != nil {
		return fmt.Errorf("kafka client: %w", err)
	}
	defer kc.Close()

	reg := obs.NewRegistry()
	health := obs.NewHealth(map[string]obs.CheckFunc{
		"postgres": func(ctx context.Context) error { return pool.Ping(ctx) },
		"kafka":    func(ctx context.Context) error { return kc.Ping(ctx) },
	})
	r, err := relay.New(relay.Config{
		ID: c.RelayID, TopicPrefix: c.TopicPrefix, BatchSize: c.BatchSize, Workers: c.Workers, PollInterval: c.PollInterval, Linger: c.Linger, RescanInterval: c.RescanInterval,
		LeaseTTL: c.LeaseTTL, ShutdownGrace: c.ShutdownGrace,
	}, pool, kc, reg, base)
	if err != nil {
		return err
	}

	g, gctx := errgroup.WithContext(ctx)
	// Readiness turns false first on shutdown; the relay then finishes its
	// batch in flight and releases its leases.
	stopDrain := context.AfterFunc(gctx, health.SetDraining)
	defer stopDrain()
	g.Go(func() error { return obs.Serve(gctx, c.MetricsAddr, health.Mux(reg), 5*time.Second, log) })
	g.Go(func() error {
		if err := retry(gctx, log, "applying migrations", func(ctx context.Context) error {
			if !c.Migrate {
				return nil
			}
			return migrations.Up(ctx, c.PostgresURL)
		}); err != nil {
			return nil // cancelled while waiting
		}
		specs := topics.EventSpecs(c.TopicPrefix, c.AggregateTypes, int32(c.TopicPartitions), int16(c.TopicReplication), log)
		if err := retry(gctx, log, "ensuring topics", func(ctx context.Context) error {
			return topics.EnsureAll(ctx, kadm.NewClient(kc), specs)
		}); err != nil {
			return nil
		}
		return r.Run(gctx)
	})
	err = g.Wait()
	log.Info("stopped")
	return err
}

// retry runs f until it succeeds or ctx is done, backing off up to 10 s.
func retry(ctx context.Context, log interface {
	Warn(string, ...any)
}, what string, f func(context.Context) error) error {
	d := 200 * time.Millisecond
	for {
		actx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := f(actx)
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		log.Warn(what+" failed; retrying", "err", err, "backoff", d.String())
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(d):
		}
		d = min(2*d, 10*time.Second)
	}
}
