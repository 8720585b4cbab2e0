package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"cqrsflow/internal/config"
	"cqrsflow/internal/eventstore"
)

// Config is the api's configuration: env vars with flags of the same
// meaning, each registered once with its default in register.
type Config struct {
	PostgresURL      string
	PostgresMaxConns int
	HTTPAddr         string
	APIKeys          string // secret: never shown
	APIKeysFile      string
	MaxBodyBytes     int
	RateLimitRPS     int
	RateLimitBurst   int
	CommandTimeout   time.Duration
	BodyTimeout      time.Duration
	ShutdownTimeout  time.Duration
	MigrateOnStart   bool
	IdempotencyTTL   time.Duration
	ElasticsearchURL string // read routes (internal/query)
	IndexPrefix      string
	// Group commit (eventstore.Batcher): concurrent commands share one
	// transaction. Off: one transaction per command.
	GroupCommit           bool
	GroupCommitMaxBatch   int
	GroupCommitCommitters int
	GroupCommitLinger     time.Duration
}

// registerDB registers what `api migrate` needs too.
func (c *Config) registerDB(s *config.Set) {
	s.URL(&c.PostgresURL, "POSTGRES_URL", config.DefaultPostgresURL, "PostgreSQL URL of the event store")
}

// register registers the server's settings.
func (c *Config) register(s *config.Set) {
	c.registerDB(s)
	s.Int(&c.PostgresMaxConns, "POSTGRES_MAX_CONNS", 16, "maximum PostgreSQL connections")
	s.String(&c.HTTPAddr, "HTTP_ADDR", "127.0.0.1:8080", "HTTP listen address (API, health and metrics)")
	s.Secret(&c.APIKeys, "API_KEYS", "comma list of API keys, each `key` or `id:key`")
	s.String(&c.APIKeysFile, "API_KEYS_FILE", "", "file with one API key (or id:key) per line; default <state dir>/api-key if it exists and API_KEYS is empty")
	s.Int(&c.MaxBodyBytes, "MAX_BODY_BYTES", 1<<20, "maximum request body size in bytes")
	s.Int(&c.RateLimitRPS, "RATE_LIMIT_RPS", 2000, "per-key rate limit in requests/s (0 disables)")
	s.Int(&c.RateLimitBurst, "RATE_LIMIT_BURST", 4000, "per-key rate limit burst")
	s.Duration(&c.CommandTimeout, "COMMAND_TIMEOUT", 5*time.Second, "bound on one command's database work")
	s.Duration(&c.BodyTimeout, "BODY_TIMEOUT", 10*time.Second, "bound on receiving a request body (slow senders get 408)")
	s.Duration(&c.ShutdownTimeout, "SHUTDOWN_TIMEOUT", 15*time.Second, "graceful shutdown: time to drain in-flight requests")
	s.Duration(&c.IdempotencyTTL, "IDEMPOTENCY_TTL", 24*time.Hour, "how long idempotency keys are kept (0 keeps them forever)")
	s.Bool(&c.MigrateOnStart, "MIGRATE_ON_START", true, "apply migrations when the server starts")
	s.URL(&c.ElasticsearchURL, "ELASTICSEARCH_URL", config.DefaultElasticsearchURL, "Elasticsearch URL of the read models")
	s.String(&c.IndexPrefix, "INDEX_PREFIX", "", "Elasticsearch index/alias name prefix of the read models")
	gc := eventstore.DefaultBatchConfig()
	s.Bool(&c.GroupCommit, "GROUP_COMMIT", true, "run concurrent commands in one PostgreSQL transaction (false: one transaction per command)")
	s.Int(&c.GroupCommitMaxBatch, "GROUP_COMMIT_MAX_BATCH", gc.MaxBatch, "most commands in one group-commit transaction")
	s.Int(&c.GroupCommitCommitters, "GROUP_COMMIT_COMMITTERS", gc.Committers, "group-commit transactions in flight at once (a command finding none in flight runs alone at once)")
	s.Duration(&c.GroupCommitLinger, "GROUP_COMMIT_LINGER", gc.Linger, "after a full batch, wait this long for more commands (0: never wait)")
}

// batchConfig is the group-commit configuration; a batch's database work
// is bounded like one command's.
func (c *Config) batchConfig() eventstore.BatchConfig {
	return eventstore.BatchConfig{MaxBatch: c.GroupCommitMaxBatch, Committers: c.GroupCommitCommitters,
		Linger: c.GroupCommitLinger, Timeout: c.CommandTimeout}
}

func (c *Config) validateDB() error {
	if c.PostgresURL == "" {
		return errors.New("POSTGRES_URL is required")
	}
	return nil
}

// validate reports every problem at once and resolves the default key file.
func (c *Config) validate() error {
	var errs []error
	errs = append(errs, c.validateDB())
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
		errs = append(errs, fmt.Errorf("COMMAND_TIMEOUT, BODY_TIMEOUT and SHUTDOWN_TIMEOUT must be > 0"))
	}
	if c.GroupCommit {
		if err := c.batchConfig().Validate(); err != nil {
			errs = append(errs, fmt.Errorf("GROUP_COMMIT_MAX_BATCH, GROUP_COMMIT_COMMITTERS, GROUP_COMMIT_LINGER: %w", err))
		}
	}
	if c.ElasticsearchURL == "" {
		errs = append(errs, errors.New("ELASTICSEARCH_URL is required"))
	}
	if c.APIKeys == "" && c.APIKeysFile == "" {
		if p := filepath.Join(config.StateDir(), "api-key"); fileExists(p) {
			c.APIKeysFile = p
		}
	}
	return errors.Join(errs...)
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}
