package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"cqrsflow/internal/auth"
	"cqrsflow/internal/config"
	"cqrsflow/internal/esindex"
	"cqrsflow/internal/eventstore"
	"cqrsflow/internal/obs"
	"cqrsflow/internal/query"
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
	Elasticsearch    esindex.Settings // read routes (internal/query)
	IndexPrefix      string

	// Who may call: API keys above, OIDC bearer tokens here.
	OIDCIssuer         string
	OIDCAudience       string
	OIDCJWKSURL        string
	OIDCJWKSFile       string
	OIDCScopePrefix    string
	OIDCJWKSRefresh    time.Duration
	PublicProductReads bool

	// The HTTP edge.
	TrustedProxies       []string
	ClientRateLimitRPS   int
	ClientRateLimitBurst int
	MaxWaitsPerClient    int
	HTTPReadTimeout      time.Duration
	HTTPWriteTimeout     time.Duration
	HTTPIdleTimeout      time.Duration
	HTTPMaxHeaderBytes   int
	Debug                obs.Debug // DEBUG_ADDR: pprof on loopback ("" = off)

	keys *auth.Keys // parsed by validate; nil when only tokens are accepted

	// Group commit (eventstore.Batcher): concurrent commands share one
	// transaction. Off: one transaction per command.
	GroupCommit           bool
	GroupCommitMaxBatch   int
	GroupCommitCommitters int
	GroupCommitLinger     time.Duration
	NotifyInterval        time.Duration

	// Read batching (query.Handler.Batch): reads in flight at once go
	// to Elasticsearch as one _mget / _msearch. Off: one request each.
	ReadBatchGets     bool
	ReadBatchSearches bool
	ReadBatchMax      int
	ReadBatchSlots    int
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
	s.Secret(&c.APIKeys, "API_KEYS", "comma list of API keys, each `key`, `id:key`, `id:key:scopes` or `id:key:scopes:user=U1|U2` (scopes: read,write,admin; default read,write)")
	s.String(&c.APIKeysFile, "API_KEYS_FILE", "", "file with one API key per line, as in API_KEYS; default <state dir>/api-key if it exists and API_KEYS is empty")
	s.Int(&c.MaxBodyBytes, "MAX_BODY_BYTES", 1<<20, "maximum request body size in bytes")
	s.Int(&c.RateLimitRPS, "RATE_LIMIT_RPS", 2000, "per-principal (API key or token user) rate limit in requests/s (0 disables)")
	s.Int(&c.RateLimitBurst, "RATE_LIMIT_BURST", 4000, "per-principal rate limit burst")
	s.Duration(&c.CommandTimeout, "COMMAND_TIMEOUT", 5*time.Second, "bound on one command's database work")
	s.Duration(&c.BodyTimeout, "BODY_TIMEOUT", 10*time.Second, "bound on receiving a request body (slow senders get 408)")
	s.Duration(&c.ShutdownTimeout, "SHUTDOWN_TIMEOUT", 15*time.Second, "graceful shutdown: time to drain in-flight requests")
	s.Duration(&c.IdempotencyTTL, "IDEMPOTENCY_TTL", 24*time.Hour, "how long idempotency keys are kept (0 keeps them forever)")
	s.Bool(&c.MigrateOnStart, "MIGRATE_ON_START", true, "apply migrations when the server starts")
	c.Elasticsearch.Register(s)
	s.String(&c.IndexPrefix, "INDEX_PREFIX", "", "Elasticsearch index/alias name prefix of the read models")
	c.registerAuth(s)
	c.registerEdge(s)
	gc := eventstore.DefaultBatchConfig()
	s.Bool(&c.GroupCommit, "GROUP_COMMIT", true, "run concurrent commands in one PostgreSQL transaction (false: one transaction per command)")
	s.Int(&c.GroupCommitMaxBatch, "GROUP_COMMIT_MAX_BATCH", gc.MaxBatch, "most commands in one group-commit transaction")
	s.Int(&c.GroupCommitCommitters, "GROUP_COMMIT_COMMITTERS", gc.Committers, "group-commit transactions in flight at once (a command finding none in flight runs alone at once)")
	s.Duration(&c.GroupCommitLinger, "GROUP_COMMIT_LINGER", gc.Linger, "after a full batch, wait this long for more commands (0: never wait)")
	rb := query.DefaultBatchConfig()
	s.Bool(&c.ReadBatchGets, "READ_BATCH_GETS", rb.Gets, "send the gets by id in flight at once to Elasticsearch as one _mget (false: one GET per read)")
	s.Bool(&c.ReadBatchSearches, "READ_BATCH_SEARCHES", rb.Searches, "send the searches and lists in flight at once to Elasticsearch as one _msearch (false: one _search per read)")
	s.Int(&c.ReadBatchMax, "READ_BATCH_MAX", rb.MaxBatch, "most reads in one _mget or _msearch")
	s.Int(&c.ReadBatchSlots, "READ_BATCH_SLOTS", rb.Slots, "batched requests of each kind (gets, searches) in flight to Elasticsearch at once (a read finding one free is sent at once, alone)")
	s.Duration(&c.NotifyInterval, "NOTIFY_INTERVAL", eventstore.DefaultNotifyInterval,
		"least time between two post-commit NOTIFY rounds to the relay, 0..1s (commits within it share one; keep it at or below the relay's WAKE_LINGER)")
}

func (c *Config) registerAuth(s *config.Set) {
	s.Bool(&c.PublicProductReads, "PUBLIC_PRODUCT_READS", false, "serve the product read routes without a credential (a public catalogue); orders always need one")
	s.String(&c.OIDCIssuer, "OIDC_ISSUER", "", "accept bearer tokens of this OpenID Connect issuer (iss), besides API keys")
	s.String(&c.OIDCAudience, "OIDC_AUDIENCE", "", "the audience (aud) tokens must be issued for; required with OIDC_ISSUER")
	s.URL(&c.OIDCJWKSURL, "OIDC_JWKS_URL", "", "the issuer's JWKS (https, or http to loopback), fetched at start and refreshed")
	s.String(&c.OIDCJWKSFile, "OIDC_JWKS_FILE", "", "the issuer's JWKS as a file (instead of OIDC_JWKS_URL), read at start")
	s.String(&c.OIDCScopePrefix, "OIDC_SCOPE_PREFIX", "", "prefix of the token scopes read, write, admin (e.g. cqrsflow: for cqrsflow:read)")
	s.Duration(&c.OIDCJWKSRefresh, "OIDC_JWKS_REFRESH", 15*time.Minute, "how often OIDC_JWKS_URL is fetched again (an unknown key id also triggers a fetch, at most once a minute)")
}

func (c *Config) registerEdge(s *config.Set) {
	s.List(&c.TrustedProxies, "TRUSTED_PROXIES", "", "addresses or CIDRs of proxies whose X-Forwarded-For names the client (none: the peer is the client)")
	s.Int(&c.ClientRateLimitRPS, "CLIENT_RATE_LIMIT_RPS", 20, "per client address: requests/s without a valid credential, counted before authentication (0 disables)")
	s.Int(&c.ClientRateLimitBurst, "CLIENT_RATE_LIMIT_BURST", 100, "per client address: burst of CLIENT_RATE_LIMIT_RPS")
	s.Int(&c.MaxWaitsPerClient, "MAX_WAITS_PER_CLIENT", 8, "per client address: read-your-writes waits (min_version with wait) in progress at once (0: no bound)")
	s.Duration(&c.HTTPReadTimeout, "HTTP_READ_TIMEOUT", obs.DefaultReadTimeout, "bound on reading a request (headers within 5s; the body within BODY_TIMEOUT)")
	s.Duration(&c.HTTPWriteTimeout, "HTTP_WRITE_TIMEOUT", obs.DefaultWriteTimeout, "bound on a request from its headers to the end of its response (covers a 10s read-your-writes wait)")
	s.Duration(&c.HTTPIdleTimeout, "HTTP_IDLE_TIMEOUT", obs.DefaultIdleTimeout, "keep-alive connections idle longer are closed")
	s.Int(&c.HTTPMaxHeaderBytes, "HTTP_MAX_HEADER_BYTES", obs.DefaultMaxHeaderBytes, "maximum size of the request headers (16 KiB to 1 MiB)")
	c.Debug.Register(s)
}

// oidc is the OIDC token configuration.
func (c *Config) oidc() auth.OIDC {
	return auth.OIDC{Issuer: c.OIDCIssuer, Audience: c.OIDCAudience, JWKSURL: c.OIDCJWKSURL, JWKSFile: c.OIDCJWKSFile,
		ScopePrefix: c.OIDCScopePrefix, Refresh: c.OIDCJWKSRefresh}
}

// readBatchConfig is the coalescing of reads.
func (c *Config) readBatchConfig() query.BatchConfig {
	return query.BatchConfig{Gets: c.ReadBatchGets, Searches: c.ReadBatchSearches, MaxBatch: c.ReadBatchMax, Slots: c.ReadBatchSlots}
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
	if c.NotifyInterval < 0 || c.NotifyInterval > eventstore.MaxNotifyInterval {
		errs = append(errs, fmt.Errorf("NOTIFY_INTERVAL must be in 0..%s, got %s", eventstore.MaxNotifyInterval, c.NotifyInterval))
	}
	if c.GroupCommit {
		if err := c.batchConfig().Validate(); err != nil {
			errs = append(errs, fmt.Errorf("GROUP_COMMIT_MAX_BATCH, GROUP_COMMIT_COMMITTERS, GROUP_COMMIT_LINGER: %w", err))
		}
	}
	if c.ReadBatchGets || c.ReadBatchSearches {
		if err := c.readBatchConfig().Validate(); err != nil {
			errs = append(errs, fmt.Errorf("READ_BATCH_MAX, READ_BATCH_SLOTS: %w", err))
		}
	}
	errs = append(errs, c.Elasticsearch.Validate(), c.validateAuth(), c.validateEdge())
	return errors.Join(errs...)
}

// validateAuth parses the keys (every bad item named, no key quoted) and
// checks the OIDC settings; at least one of the two must be configured.
func (c *Config) validateAuth() error {
	var errs []error
	if c.APIKeys == "" && c.APIKeysFile == "" {
		if p := filepath.Join(config.StateDir(), "api-key"); fileExists(p) {
			// A key planted in a directory others can write would be trusted.
			errs = append(errs, config.CheckStateDir(config.StateDir()))
			c.APIKeysFile = p
		}
	}
	if c.APIKeysFile != "" {
		errs = append(errs, config.CheckSecretFile("API_KEYS_FILE", c.APIKeysFile))
	}
	o := c.oidc()
	errs = append(errs, o.Validate())
	if o.Enabled() && c.OIDCJWKSRefresh < time.Minute {
		errs = append(errs, errors.New("OIDC_JWKS_REFRESH must be at least 1m"))
	}
	if c.APIKeys != "" || c.APIKeysFile != "" || !o.Enabled() { // else tokens only
		keys, err := auth.ParseKeys(c.APIKeys, c.APIKeysFile)
		c.keys = keys
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (c *Config) validateEdge() error {
	var errs []error
	if c.ClientRateLimitRPS < 0 || c.ClientRateLimitBurst < 0 || c.MaxWaitsPerClient < 0 {
		errs = append(errs, errors.New("CLIENT_RATE_LIMIT_RPS, CLIENT_RATE_LIMIT_BURST and MAX_WAITS_PER_CLIENT must be >= 0"))
	}
	for _, p := range c.TrustedProxies {
		if _, _, err := net.ParseCIDR(p); err != nil && net.ParseIP(p) == nil {
			errs = append(errs, fmt.Errorf("TRUSTED_PROXIES: %q is neither an IP address nor a CIDR", p))
		}
	}
	if c.HTTPReadTimeout <= 0 || c.HTTPIdleTimeout <= 0 {
		errs = append(errs, errors.New("HTTP_READ_TIMEOUT and HTTP_IDLE_TIMEOUT must be > 0"))
	}
	// A write must be able to wait for its body and run its command; a
	// read its whole read-your-writes wait plus its last Elasticsearch call.
	need := max(c.BodyTimeout+c.CommandTimeout, query.MaxWait+query.RequestTimeout)
	if c.HTTPWriteTimeout <= need {
		errs = append(errs, fmt.Errorf("HTTP_WRITE_TIMEOUT must be above %s (BODY_TIMEOUT + COMMAND_TIMEOUT, and the %s read-your-writes wait + %s)",
			need, query.MaxWait, query.RequestTimeout))
	}
	if c.HTTPMaxHeaderBytes < 16<<10 || c.HTTPMaxHeaderBytes > 1<<20 {
		errs = append(errs, errors.New("HTTP_MAX_HEADER_BYTES must be between 16384 and 1048576"))
	}
	errs = append(errs, c.Debug.Validate("HTTP_ADDR", c.HTTPAddr))
	return errors.Join(errs...)
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}
