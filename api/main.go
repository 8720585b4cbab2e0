// Command api is cqrsflow's HTTP API: write commands appended to the
// PostgreSQL event store (with their outbox rows), health and metrics.
//
//	api [flags]          serve (applies migrations first unless MIGRATE_ON_START=false)
//	api migrate [flags]  apply the SQL migrations and exit
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/jackc/pgx/v5/pgxpool"

	"cqrsflow/internal/config"
	"cqrsflow/internal/esindex"
	"cqrsflow/internal/eventschema"
	"cqrsflow/internal/eventstore"
	"cqrsflow/internal/httpapi"
	"cqrsflow/internal/migrations"
	"cqrsflow/internal/obs"
	"cqrsflow/internal/query"
)

func main() {
	if err := run(context.Background(), os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "api:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	if len(args) > 0 && args[0] == "migrate" {
		cfg, err := parseConfig("api migrate", args[1:])
		if err != nil {
			return err
		}
		log := obs.NewLogger(obs.Stderr, cfg.LogLevel).With("component", "api")
		if err := migrations.Up(ctx, cfg.PostgresURL); err != nil {
			return err
		}
		v, dirty, err := migrations.Version(cfg.PostgresURL)
		log.Info("migrations applied", "version", v, "dirty", dirty, "postgres_url", config.MaskURL(cfg.PostgresURL))
		return err
	}
	cfg, err := parseConfig("api", args)
	if err != nil {
		return err
	}
	return serve(ctx, cfg)
}

func serve(ctx context.Context, cfg Config) error {
	log := obs.NewLogger(obs.Stderr, cfg.LogLevel).With("component", "api")
	log.Info("starting", cfg.logAttrs()...)
	keys, err := httpapi.ParseKeys(cfg.APIKeys, cfg.APIKeysFile)
	if err != nil {
		return err
	}
	log.Info("api keys loaded", "principals", keys.IDs())
	schemas, err := eventschema.Load()
	if err != nil {
		return err
	}
	if cfg.MigrateOnStart {
		if err := migrations.Up(ctx, cfg.PostgresURL); err != nil {
			return err
		}
	}
	pcfg, err := pgxpool.ParseConfig(cfg.PostgresURL)
	if err != nil {
		return fmt.Errorf("POSTGRES_URL: %w", err)
	}
	pcfg.MaxConns = int32(cfg.PostgresMaxConns)
	if pcfg.ConnConfig.ConnectTimeout == 0 || pcfg.ConnConfig.ConnectTimeout > 2*time.Second {
		pcfg.ConnConfig.ConnectTimeout = 2 * time.Second // PostgreSQL down → 503 quickly
	}
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return fmt.Errorf("opening PostgreSQL pool: %w", err)
	}
	defer pool.Close()
	store := eventstore.New(pool)
	defer store.Close() // before pool.Close (defers run last-in first-out)
	if cfg.IdempotencyTTL > 0 {
		go store.PurgeLoop(ctx, cfg.IdempotencyTTL, max(min(cfg.IdempotencyTTL/10, 10*time.Minute), time.Second), func(n int64, err error) {
			if err != nil {
				log.Warn("purging idempotency keys", "err", err)
			} else if n > 0 {
				log.Info("purged idempotency keys", "count", n)
			}
		})
	}

	es, err := esindex.New(cfg.ElasticsearchURL)
	if err != nil {
		return err
	}
	reads := query.New(es, cfg.IndexPrefix, log)

	reg := obs.NewRegistry()
	health := obs.NewHealth(map[string]obs.CheckFunc{"postgres": store.Ping, "elasticsearch": reads.Ping})
	engine, err := httpapi.NewEngine(httpapi.Config{
		MaxBodyBytes:   int64(cfg.MaxBodyBytes),
		RateLimitRPS:   float64(cfg.RateLimitRPS),
		RateLimitBurst: cfg.RateLimitBurst,
		CommandTimeout: cfg.CommandTimeout,
		BodyTimeout:    cfg.BodyTimeout,
	}, httpapi.Deps{
		Store: store, Schemas: schemas, Keys: keys, Health: health,
		Registerer: reg, Gatherer: reg, Log: log,
		Mount: func(r gin.IRouter) { query.Register(r, reads) },
	})
	if err != nil {
		return err
	}

	// Shutdown: readiness turns false first, then the server drains
	// in-flight requests (SHUTDOWN_TIMEOUT), then the pool closes (defer).
	srvCtx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-ctx.Done()
		log.Info("shutting down: readiness false, draining")
		health.SetDraining()
		cancel()
	}()
	err = obs.Serve(srvCtx, cfg.HTTPAddr, engine, cfg.ShutdownTimeout, log)
	log.Info("stopped", "err", err)
	return err
}
