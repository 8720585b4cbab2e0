package main

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"cqrsflow/internal/config"
)

// Config is the api's configuration: env vars with flags of the same meaning.
type Config struct {
	PostgresURL      string
	PostgresMaxConns int
	HTTPAddr         string
	APIKeys          string // secret: never logged
	APIKeysFile      string
	MaxBodyBytes     int
	RateLimitRPS     int
	RateLimitBurst   int
	CommandTimeout   time.Duration
	BodyTimeout      time.Duration
	LogLevel         string
	ShutdownTimeout  time.Duration
	MigrateOnStart   bool
	IdempotencyTTL   time.Duration
	ElasticsearchURL string // read routes (internal/query)
	IndexPrefix      string
}

func parseConfig(name string, args []string) (Config, error) {
	var c Config
	var errs []error
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	config.String(fs, &c.PostgresURL, "POSTGRES_URL", config.DefaultPostgresURL, "PostgreSQL URL of the event store")
	config.Int(fs, &c.PostgresMaxConns, "POSTGRES_MAX_CONNS", 16, "maximum PostgreSQL connections", &errs)
	config.String(fs, &c.HTTPAddr, "HTTP_ADDR", "127.0.0.1:8080", "HTTP listen address (API, health and metrics)")
	config.String(fs, &c.APIKeys, "API_KEYS", "", "comma list of API keys, each `key` or `id:key`")
	config.String(fs, &c.APIKeysFile, "API_KEYS_FILE", "", "file with one API key (or id:key) per line; default <state dir>/api-key if it exists and API_KEYS is empty")
	config.Int(fs, &c.MaxBodyBytes, "MAX_BODY_BYTES", 1<<20, "maximum request body size in bytes", &errs)
	config.Int(fs, &c.RateLimitRPS, "RATE_LIMIT_RPS", 2000, "per-key rate limit in requests/s (0 disables)", &errs)
	config.Int(fs, &c.RateLimitBurst, "RATE_LIMIT_BURST", 4000, "per-key rate limit burst", &errs)
	config.Duration(fs, &c.CommandTimeout, "COMMAND_TIMEOUT", 5*time.Second, "bound on one command's database work", &errs)
	config.Duration(fs, &c.BodyTimeout, "BODY_TIMEOUT", 10*time.Second, "bound on receiving a request body (slow senders get 408)", &errs)
	config.String(fs, &c.LogLevel, "LOG_LEVEL", "info", "log level: debug, info, warn, error")
	config.Duration(fs, &c.ShutdownTimeout, "SHUTDOWN_TIMEOUT", 15*time.Second, "graceful shutdown: time to drain in-flight requests", &errs)
	config.Duration(fs, &c.IdempotencyTTL, "IDEMPOTENCY_TTL", 24*time.Hour, "how long idempotency keys are kept (0 keeps them forever)", &errs)
	config.Bool(fs, &c.MigrateOnStart, "MIGRATE_ON_START", true, "apply migrations when the server starts", &errs)
	config.String(fs, &c.ElasticsearchURL, "ELASTICSEARCH_URL", config.DefaultElasticsearchURL, "Elasticsearch URL of the read models")
	config.String(fs, &c.IndexPrefix, "INDEX_PREFIX", "", "Elasticsearch index/alias name prefix of the read models")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		errs = append(errs, fmt.Errorf("unexpected arguments: %v", fs.Args()))
	}
	if c.PostgresURL == "" {
		errs = append(errs, errors.New("POSTGRES_URL is required"))
	}
	if c.PostgresMaxConns < 1 {
		errs = append(errs, errors.New("POSTGRES_MAX_CONNS must be >= 1"))
	}
	if c.MaxBodyBytes < 1 {
		errs = append(errs, errors.New("MAX_BODY_BYTES must be >= 1"))
	}
	if c.RateLimitRPS < 0 || c.RateLimitBurst < 0 {
		errs = append(errs, errors.New("RATE_LIMIT_RPS and RATE_LIMIT_BURST must be >= 0"))
	}
	if c.IdempotencyTTL < 0 {
		errs = append(errs, errors.New("IDEMPOTENCY_TTL must be >= 0"))
	}
	if c.CommandTimeout <= 0 || c.ShutdownTimeout <= 0 || c.BodyTimeout <= 0 {
		errs = append(errs, errors.New("COMMAND_TIMEOUT, BODY_TIMEOUT and SHUTDOWN_TIMEOUT must be > 0"))
	}
	switch strings.ToLower(c.LogLevel) {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("LOG_LEVEL %q: want debug, info, warn or error", c.LogLevel))
	}
	if c.APIKeys == "" && c.APIKeysFile == "" {
		dir := os.Getenv("CQRSFLOW_STATE_DIR")
		if dir == "" {
			dir = "/var/tmp/cqrsflow-local"
		}
		if p := filepath.Join(dir, "api-key"); fileExists(p) {
			c.APIKeysFile = p
		}
	}
	return c, errors.Join(errs...)
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}

// logAttrs is the configuration as it may be logged: secrets masked.
func (c Config) logAttrs() []any {
	keys := "(none)"
	if c.APIKeys != "" {
		keys = fmt.Sprintf("(%d set, hidden)", len(config.SplitList(c.APIKeys)))
	}
	return []any{
		slog.String("postgres_url", config.MaskURL(c.PostgresURL)),
		slog.Int("postgres_max_conns", c.PostgresMaxConns),
		slog.String("http_addr", c.HTTPAddr),
		slog.String("api_keys", keys),
		slog.String("api_keys_file", c.APIKeysFile),
		slog.Int("max_body_bytes", c.MaxBodyBytes),
		slog.Int("rate_limit_rps", c.RateLimitRPS),
		slog.Int("rate_limit_burst", c.RateLimitBurst),
		slog.Duration("command_timeout", c.CommandTimeout),
		slog.Duration("body_timeout", c.BodyTimeout),
		slog.String("log_level", c.LogLevel),
		slog.Duration("shutdown_timeout", c.ShutdownTimeout),
		slog.Bool("migrate_on_start", c.MigrateOnStart),
		slog.Duration("idempotency_ttl", c.IdempotencyTTL),
		slog.String("elasticsearch_url", config.MaskURL(c.ElasticsearchURL)),
		slog.String("index_prefix", c.IndexPrefix),
	}
}
