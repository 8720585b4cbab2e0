// Command api is cqrsflow's HTTP API: write commands appended to the
// PostgreSQL event store (with their outbox rows), queries served from the
// Elasticsearch read models, health and metrics.
//
//	api [serve] [flags]  serve (applies migrations first unless MIGRATE_ON_START=false)
//	api migrate [flags]  apply the SQL migrations and exit
//	api snapshots rebuild [flags]  rewrite the aggregates' snapshots from their events
package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"cqrsflow/internal/auth"
	"cqrsflow/internal/catalog"
	"cqrsflow/internal/cli"
	"cqrsflow/internal/config"
	"cqrsflow/internal/eventschema"
	"cqrsflow/internal/eventstore"
	"cqrsflow/internal/httpapi"
	"cqrsflow/internal/migrations"
	"cqrsflow/internal/obs"
	"cqrsflow/internal/query"
	"cqrsflow/internal/tracing"
)

var program = &cli.Program{
	Name:    "api",
	Summary: "cqrsflow's HTTP API: commands into the event store, queries from the read models",
	Commands: []*cli.Command{
		{Name: "serve", Summary: "serve the API, health and metrics", Default: true, Setup: func(s *config.Set) cli.Action {
			var c Config
			c.register(s)
			return cli.Action{Validate: c.validate, Run: func(ctx context.Context, env cli.Env) error { return serve(ctx, c, env) }}
		}},
		{Name: "migrate", Summary: "apply the SQL migrations and exit", Setup: func(s *config.Set) cli.Action {
			var c Config
			c.registerDB(s)
			return cli.Action{Validate: c.validateDB, Run: func(ctx context.Context, env cli.Env) error { return migrate(ctx, c, env) }}
		}},
		snapshotsCommand,
	},
}

func main() { program.Main() }

func migrate(ctx context.Context, c Config, env cli.Env) error {
	if err := migrations.Up(ctx, c.PostgresURL); err != nil {
		return err
	}
	v, dirty, err := migrations.Version(c.PostgresURL)
	env.Log.Info("migrations applied", "version", v, "dirty", dirty)
	return err
}

func openPool(ctx context.Context, c Config) (*pgxpool.Pool, error) {
	pcfg, err := pgxpool.ParseConfig(c.PostgresURL)
	if err != nil {
		return nil, fmt.Errorf("POSTGRES_URL: %w", err)
	}
	pcfg.MaxConns = int32(c.PostgresMaxConns)
	if pcfg.ConnConfig.ConnectTimeout == 0 || pcfg.ConnConfig.ConnectTimeout > 2*time.Second {
		pcfg.ConnConfig.ConnectTimeout = 2 * time.Second // PostgreSQL down → 503 quickly
	}
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, fmt.Errorf("opening PostgreSQL pool: %w", err)
	}
	return pool, nil
}

func serve(ctx context.Context, c Config, env cli.Env) error {
	log := env.Log
	authn, err := authenticator(ctx, c, log)
	if err != nil {
		return err
	}
	schemas, err := eventschema.Load()
	if err != nil {
		return err
	}
	if c.MigrateOnStart {
		if err := migrations.Up(ctx, c.PostgresURL); err != nil {
			return err
		}
	}
	pool, err := openPool(ctx, c)
	if err != nil {
		return err
	}
	defer pool.Close()
	store := eventstore.NewNotifyEvery(pool, c.NotifyInterval)
	defer store.Close() // before pool.Close (defers run last-in first-out)

	c.Elasticsearch.LogWarnings(log)
	es, err := c.Elasticsearch.Client()
	if err != nil {
		return err
	}
	reads := query.New(es, c.IndexPrefix, log).LimitWaits(httpapi.NewClientWaits(c.MaxWaitsPerClient))

	tp, stopTracing, err := tracing.Start(ctx, "cqrsflow-api", log)
	if err != nil {
		return err
	}
	defer stopTracing()

	reg := obs.NewRegistry()
	if _, err := reads.Batch(c.readBatchConfig(), reg); err != nil {
		return err
	}
	health := obs.NewHealth(map[string]obs.CheckFunc{"postgres": store.Ping, "elasticsearch": reads.Ping})
	deps := httpapi.Deps{
		Store: store, Schemas: schemas, Auth: authn, Health: health,
		Registerer: reg, Gatherer: reg, Log: log, Tracing: tp,
		Modules: catalog.Modules(reads),
	}
	if c.GroupCommit {
		b, err := eventstore.NewBatcher(store, c.batchConfig(), log, reg)
		if err != nil {
			return err
		}
		defer b.Close() // before store.Close: the last batches still notify
		deps.Store = b
	}
	deps.Store = eventstore.Traced(deps.Store, tp)
	engine, err := httpapi.NewEngine(httpapi.Config{
		MaxBodyBytes:         int64(c.MaxBodyBytes),
		RateLimitRPS:         float64(c.RateLimitRPS),
		RateLimitBurst:       c.RateLimitBurst,
		CommandTimeout:       c.CommandTimeout,
		BodyTimeout:          c.BodyTimeout,
		ClientRateLimitRPS:   float64(c.ClientRateLimitRPS),
		ClientRateLimitBurst: c.ClientRateLimitBurst,
		TrustedProxies:       c.TrustedProxies,
		PublicProductReads:   c.PublicProductReads,
	}, deps)
	if err != nil {
		return err
	}
	workers := []func(context.Context) error{obs.Debug{Addr: c.Debug.Addr, Log: log}.Run}
	if c.IdempotencyTTL > 0 {
		workers = append(workers, func(ctx context.Context) error {
			store.PurgeLoop(ctx, c.IdempotencyTTL, max(min(c.IdempotencyTTL/10, 10*time.Minute), time.Second), func(n int64, err error) {
				if err != nil {
					log.Warn("purging idempotency keys", "err", err)
				} else if n > 0 {
					log.Info("purged idempotency keys", "count", n)
				}
			})
			return nil
		})
	}
	err = obs.Service{Addr: c.HTTPAddr, Handler: engine, Health: health, Grace: c.ShutdownTimeout, Log: log,
		Server: func(s *http.Server) {
			s.ReadTimeout, s.WriteTimeout, s.IdleTimeout = c.HTTPReadTimeout, c.HTTPWriteTimeout, c.HTTPIdleTimeout
			s.MaxHeaderBytes = c.HTTPMaxHeaderBytes
		}}.Run(ctx, workers...)
	log.Info("stopped", "err", err)
	return err
}

// authenticator accepts the keys validate parsed and, with OIDC settings,
// the identity provider's tokens; it logs who may call (never a key).
func authenticator(ctx context.Context, c Config, log *slog.Logger) (*auth.Authenticator, error) {
	a := &auth.Authenticator{Keys: c.keys}
	if c.keys != nil {
		log.Info("api keys loaded", "principals", c.keys.Describe())
	}
	if o := c.oidc(); o.Enabled() {
		v, err := auth.NewVerifier(ctx, o, log)
		if err != nil {
			return nil, err
		}
		a.Tokens = v
		log.Info("oidc tokens accepted", "issuer", o.Issuer, "audience", o.Audience, "algorithms", auth.AllowedAlgorithms)
	}
	log.Info("read access", "public_product_reads", c.PublicProductReads)
	return a, nil
}
