// Package httpapi is the gin HTTP layer of the api binary: the write
// routes of docs/architecture.md, health and metrics, and the middleware
// every route shares (request id, access log, metrics, panic recovery,
// body limit) plus auth, per-key rate limit and content-type checks on the
// write routes.
//
// A write route is a port of the command layer (internal/command): it
// reads the body and headers (strict JSON, field errors, If-Match,
// Idempotency-Key, request and correlation ids), builds the typed command,
// calls its handler and maps the outcome to a status once, in fail. It
// takes no domain or event store decision.
//
// Read routes (internal/query) are mounted into the same engine, either
// with Deps.Mount or by calling their Register function on the returned
// *gin.Engine; they get the shared middleware but no auth.
package httpapi

import (
	"errors"
	"log/slog"
	"mime"
	"net/http"
	"regexp"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"cqrsflow/internal/apierr"
	"cqrsflow/internal/command"
	"cqrsflow/internal/eventschema"
	"cqrsflow/internal/obs"
)

// Config are the HTTP settings.
type Config struct {
	MaxBodyBytes   int64         // request bodies above → 413
	RateLimitRPS   float64       // per API key; <= 0 disables
	RateLimitBurst int           // token bucket size
	CommandTimeout time.Duration // bound on one command's database work
	BodyTimeout    time.Duration // bound on reading a request body (slow senders → 408)
}

// DefaultConfig returns the defaults (1 MiB, 2000 rps / 4000 burst, 5 s, 10 s).
func DefaultConfig() Config {
	return Config{MaxBodyBytes: 1 << 20, RateLimitRPS: 2000, RateLimitBurst: 4000, CommandTimeout: 5 * time.Second,
		BodyTimeout: 10 * time.Second}
}

// Deps are the collaborators of the engine.
type Deps struct {
	// Store runs the commands (*eventstore.Store); the command handlers
	// built on it validate event payloads against Schemas.
	Store      command.Repository
	Schemas    *eventschema.Registry
	Keys       *Keys
	Health     *obs.Health           // /healthz and /readyz; nil → always ready
	Registerer prometheus.Registerer // api and command metrics are registered here
	Gatherer   prometheus.Gatherer   // served on /metrics; nil → no /metrics
	Log        *slog.Logger
	// Mount, if set, adds more routes (the read side) after the write
	// routes. They run behind the shared middleware, without auth.
	Mount func(r gin.IRouter)
}

type metrics struct {
	duration *prometheus.HistogramVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: obs.Namespace, Name: "http_request_duration_seconds",
			Help:    "Duration of HTTP requests by route template, method and status code.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"route", "method", "code"}),
	}
	if err := reg.Register(m.duration); err != nil {
		return nil, err
	}
	return m, nil
}

// NewEngine builds the gin engine with every write route, /healthz,
// /readyz and /metrics.
func NewEngine(cfg Config, deps Deps) (*gin.Engine, error) {
	var errs []error
	if deps.Store == nil {
		errs = append(errs, errors.New("httpapi: Store is required"))
	}
	if deps.Schemas == nil {
		errs = append(errs, errors.New("httpapi: Schemas is required"))
	}
	if deps.Keys == nil {
		errs = append(errs, errors.New("httpapi: Keys is required"))
	}
	if deps.Registerer == nil {
		errs = append(errs, errors.New("httpapi: Registerer is required"))
	}
	if cfg.MaxBodyBytes <= 0 {
		errs = append(errs, errors.New("httpapi: MaxBodyBytes must be > 0"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if deps.Log == nil {
		deps.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.CommandTimeout <= 0 {
		cfg.CommandTimeout = 5 * time.Second
	}
	if cfg.BodyTimeout <= 0 {
		cfg.BodyTimeout = 10 * time.Second
	}
	m, err := newMetrics(deps.Registerer)
	if err != nil {
		return nil, err
	}
	cmds, err := command.New(deps.Store, deps.Schemas, deps.Registerer)
	if err != nil {
		return nil, err
	}
	gin.SetMode(gin.ReleaseMode)
	e := gin.New()
	e.HandleMethodNotAllowed = true
	e.ContextWithFallback = true
	e.Use(requestID(), observe(deps.Log, m), recoverJSON(deps.Log), limitBody(cfg.MaxBodyBytes))
	e.NoRoute(func(c *gin.Context) { apierr.Abort(c, http.StatusNotFound, "not_found", "no such route", nil) })
	e.NoMethod(func(c *gin.Context) {
		apierr.Abort(c, http.StatusMethodNotAllowed, "method_not_allowed", "method not allowed on this route", nil)
	})

	if deps.Health != nil {
		e.GET("/healthz", gin.WrapH(deps.Health.HealthzHandler()))
		e.GET("/readyz", gin.WrapH(deps.Health.ReadyzHandler()))
	} else {
		ok := func(c *gin.Context) { c.JSON(http.StatusOK, gin.H{"status": "ok"}) }
		e.GET("/healthz", ok)
		e.GET("/readyz", ok)
	}
	if deps.Gatherer != nil {
		e.GET("/metrics", gin.WrapH(promhttp.HandlerFor(deps.Gatherer, promhttp.HandlerOpts{})))
	}

	h := &handlers{cfg: cfg, cmds: cmds, log: deps.Log}
	w := e.Group("", authenticate(deps.Keys), rateLimit(deps.Keys, cfg.RateLimitRPS, cfg.RateLimitBurst), requireJSON())
	w.POST("/v1/products", h.createProduct)
	w.PUT("/v1/products/:id", h.updateProduct)
	w.DELETE("/v1/products/:id", h.deleteProduct)
	w.POST("/v1/orders", h.createOrder(http.StatusCreated))
	w.POST("/v1/orders/:id/pay", h.orderAction("pay"))
	w.POST("/v1/orders/:id/ship", h.orderAction("ship"))
	w.POST("/v1/orders/:id/cancel", h.orderAction("cancel"))
	w.POST("/api/commands/order/create", h.createOrder(http.StatusAccepted))
	if deps.Mount != nil {
		deps.Mount(e)
	}
	return e, nil
}

const requestIDKey = "cqrsflow.request_id"

var validRequestID = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,128}$`)

// requestID takes X-Request-ID if it is sane, generates one otherwise,
// and echoes it.
func requestID() gin.HandlerFunc {
	return func(c *gin.Context) {
		id := c.GetHeader("X-Request-ID")
		if !validRequestID.MatchString(id) {
			id = uuid.NewString()
		}
		c.Set(requestIDKey, id)
		c.Header("X-Request-ID", id)
		c.Next()
	}
}

// observe writes the access log line and the request duration metric.
func observe(log *slog.Logger, m *metrics) gin.HandlerFunc {
	return func(c *gin.Context) {
		start := time.Now()
		c.Next()
		d := time.Since(start)
		route := c.FullPath()
		if route == "" {
			route = "unmatched"
		}
		status := c.Writer.Status()
		m.duration.WithLabelValues(route, c.Request.Method, strconv.Itoa(status)).Observe(d.Seconds())
		level := slog.LevelInfo
		if status >= 500 {
			level = slog.LevelError
		}
		if !log.Enabled(c.Request.Context(), level) {
			return
		}
		log.LogAttrs(c.Request.Context(), level, "http request",
			slog.String("method", c.Request.Method),
			slog.String("route", route),
			slog.String("path", c.Request.URL.Path),
			slog.Int("status", status),
			slog.Float64("duration_ms", float64(d.Microseconds())/1000),
			slog.Int("bytes", c.Writer.Size()),
			slog.String("request_id", c.GetString(requestIDKey)),
			slog.String("principal", c.GetString(principalKey)),
			slog.String("remote", c.ClientIP()),
		)
	}
}

// recoverJSON turns a panic into a JSON 500 (stack logged, never sent).
func recoverJSON(log *slog.Logger) gin.HandlerFunc {
	return func(c *gin.Context) {
		defer func() {
			r := recover()
			if r == nil {
				return
			}
			if r == http.ErrAbortHandler {
				panic(r)
			}
			log.Error("panic serving request", "err", r, "stack", string(debug.Stack()),
				"request_id", c.GetString(requestIDKey))
			if !c.Writer.Written() {
				apierr.Abort(c, http.StatusInternalServerError, "internal", "internal error", nil)
			} else {
				c.Abort()
			}
		}()
		c.Next()
	}
}

// limitBody answers 413 for a declared Content-Length above max and caps
// what a handler can read otherwise.
func limitBody(max int64) gin.HandlerFunc {
	return func(c *gin.Context) {
		if c.Request.ContentLength > max {
			apierr.Abort(c, http.StatusRequestEntityTooLarge, "body_too_large",
				"request body exceeds "+strconv.FormatInt(max, 10)+" bytes", nil)
			return
		}
		if c.Request.Body != nil {
			c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, max)
		}
		c.Next()
	}
}

// requireJSON answers 415 when a request with a body is not application/json.
func requireJSON() gin.HandlerFunc {
	return func(c *gin.Context) {
		r := c.Request
		if r.ContentLength == 0 && len(r.TransferEncoding) == 0 {
			c.Next() // no body: nothing to check (DELETE, lifecycle actions)
			return
		}
		mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
		if err != nil || mt != "application/json" {
			apierr.Abort(c, http.StatusUnsupportedMediaType, "unsupported_media_type",
				"Content-Type must be application/json", gin.H{"content_type": r.Header.Get("Content-Type")})
			return
		}
		c.Next()
	}
}
