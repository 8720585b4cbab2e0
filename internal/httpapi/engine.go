// Package httpapi is the gin HTTP layer of the api binary: the write
// routes of docs/architecture.md, health and metrics, and the middleware
// every route shares (request id, access log, metrics, panic recovery,
// per-client limit, body limit), and the authorization of every /v1 route.
//
// A write route is a port of the command layer (internal/command): it
// reads the body and headers (strict JSON, field errors, If-Match,
// Idempotency-Key, request and correlation ids), builds the typed command,
// calls its handler and maps the outcome to a status once, in fail. It
// takes no domain or event store decision.
//
// Authorization is decided here, per route group (see NewEngine): writes
// need the write scope (product writes also a principal not bound to
// users), reads the read scope — product reads none when
// Config.PublicProductReads. The read routes (internal/query) are mounted
// into those groups with Deps.Mount.
package httpapi

import (
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"cqrsflow/internal/apierr"
	"cqrsflow/internal/auth"
	"cqrsflow/internal/command"
	"cqrsflow/internal/eventschema"
	"cqrsflow/internal/obs"
)

// Config are the HTTP settings.
type Config struct {
	MaxBodyBytes   int64         // request bodies above → 413
	RateLimitRPS   float64       // per principal; <= 0 disables
	RateLimitBurst int           // token bucket size
	CommandTimeout time.Duration // bound on one command's database work
	BodyTimeout    time.Duration // bound on reading a request body (slow senders → 408)
	// ClientRateLimitRPS and ClientRateLimitBurst throttle requests
	// without a valid credential per client address, before
	// authentication; <= 0 disables.
	ClientRateLimitRPS   float64
	ClientRateLimitBurst int
	// TrustedProxies are the addresses or CIDRs whose X-Forwarded-For
	// names the client; none by default (the peer address is the client).
	TrustedProxies []string
	// PublicProductReads opens the product read routes to anonymous
	// callers (a shop catalogue). Order routes always need a credential.
	PublicProductReads bool
}

// DefaultConfig returns the defaults (1 MiB, 2000 rps / 4000 burst per
// principal, 5 s, 10 s, 20 rps / 100 burst per client without credential).
func DefaultConfig() Config {
	return Config{MaxBodyBytes: 1 << 20, RateLimitRPS: 2000, RateLimitBurst: 4000, CommandTimeout: 5 * time.Second,
		BodyTimeout: 10 * time.Second, ClientRateLimitRPS: 20, ClientRateLimitBurst: 100}
}

// maxTracked bounds the rate limiters kept (per client address and per
// principal, each).
const maxTracked = 100_000

// Deps are the collaborators of the engine.
type Deps struct {
	// Store runs the commands (*eventstore.Store); the command handlers
	// built on it validate event payloads against Schemas.
	Store      command.Repository
	Schemas    *eventschema.Registry
	Auth       *auth.Authenticator
	Health     *obs.Health           // /healthz and /readyz; nil → always ready
	Registerer prometheus.Registerer // api and command metrics are registered here
	Gatherer   prometheus.Gatherer   // served on /metrics; nil → no /metrics
	Log        *slog.Logger
	// Modules add the routes of the aggregate types and read models
	// (internal/catalog lists them) to the groups that authorize them.
	Modules []Module
}

// Routes are the route groups a module registers its routes on; each
// group carries its access rules, so a route's authorization follows from
// the group it is on.
type Routes struct {
	// Commands need the write scope and a JSON body.
	Commands gin.IRouter
	// SharedCommands are Commands on data no single user owns (the
	// product catalogue): principals bound to users may not send them.
	SharedCommands gin.IRouter
	// Reads need the read scope; handlers restrict a principal bound to
	// users to what those users may see (auth.FromContext).
	Reads gin.IRouter
	// CatalogueReads are Reads, or open to anonymous callers when
	// Config.PublicProductReads is set.
	CatalogueReads gin.IRouter

	h *handlers
}

// A Module registers the routes of one aggregate type or read model.
type Module func(Routes) error

// ProductCommands registers the product command routes.
func ProductCommands(r Routes) error {
	r.SharedCommands.POST("/v1/products", r.h.createProduct)
	r.SharedCommands.PUT("/v1/products/:id", r.h.updateProduct)
	r.SharedCommands.DELETE("/v1/products/:id", r.h.deleteProduct)
	return nil
}

// OrderCommands registers the order command routes, and the seed
// tutorial's create route.
func OrderCommands(r Routes) error {
	r.Commands.POST("/v1/orders", r.h.createOrder(http.StatusCreated))
	r.Commands.POST("/v1/orders/:id/pay", r.h.orderAction("pay"))
	r.Commands.POST("/v1/orders/:id/ship", r.h.orderAction("ship"))
	r.Commands.POST("/v1/orders/:id/cancel", r.h.orderAction("cancel"))
	r.Commands.POST("/api/commands/order/create", r.h.createOrder(http.StatusAccepted))
	return nil
}

type metrics struct {
	duration *prometheus.HistogramVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: obs.Namespace, Name: "http_request_duration_seconds",
			Help:    "Duration of HTTP requests by route template, method (GET, POST, …, other) and status class (2xx, 4xx, …).",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"route", "method", "code"}),
	}
	if err := reg.Register(m.duration); err != nil {
		return nil, err
	}
	return m, nil
}

func checkDeps(cfg Config, deps Deps) error {
	var errs []error
	if deps.Store == nil {
		errs = append(errs, errors.New("httpapi: Store is required"))
	}
	if deps.Schemas == nil {
		errs = append(errs, errors.New("httpapi: Schemas is required"))
	}
	if deps.Auth == nil || (deps.Auth.Keys == nil && deps.Auth.Tokens == nil) {
		errs = append(errs, errors.New("httpapi: Auth with keys or tokens is required"))
	}
	if deps.Registerer == nil {
		errs = append(errs, errors.New("httpapi: Registerer is required"))
	}
	if cfg.MaxBodyBytes <= 0 {
		errs = append(errs, errors.New("httpapi: MaxBodyBytes must be > 0"))
	}
	return errors.Join(errs...)
}

// NewEngine builds the gin engine with /healthz, /readyz and /metrics, and
// the command and read routes of deps.Modules.
func NewEngine(cfg Config, deps Deps) (*gin.Engine, error) {
	if err := checkDeps(cfg, deps); err != nil {
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
	if err := e.SetTrustedProxies(cfg.TrustedProxies); err != nil {
		return nil, err
	}
	// Route on the raw path: an encoded slash (%2F) stays inside the :id
	// it was sent in, and is refused there as a malformed id (400 naming
	// id) instead of turning into another route.
	e.UseRawPath = true
	// An API answers what was asked: /v1/products/ (an empty id) is not
	// redirected to the list, it is no route (404).
	e.RedirectTrailingSlash = false
	e.HandleMethodNotAllowed = true
	e.ContextWithFallback = true
	e.Use(requestID(), observe(deps.Log, m), recoverJSON(deps.Log),
		limitClients(cfg.ClientRateLimitRPS, cfg.ClientRateLimitBurst, maxTracked), limitBody(cfg.MaxBodyBytes))
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

	perPrincipal := limitPrincipals(cfg.RateLimitRPS, cfg.RateLimitBurst, maxTracked)
	h := &handlers{cfg: cfg, cmds: cmds, log: deps.Log}
	w := e.Group("", authenticate(deps.Auth, false), requireScope(auth.Write), perPrincipal, requireJSON())
	r := Routes{Commands: w, SharedCommands: w.Group("", requireUnbound()),
		Reads:          e.Group("", authenticate(deps.Auth, false), requireScope(auth.Read), perPrincipal),
		CatalogueReads: e.Group("", authenticate(deps.Auth, false), requireScope(auth.Read), perPrincipal),
		h:              h}
	if cfg.PublicProductReads {
		r.CatalogueReads = e.Group("", authenticate(deps.Auth, true), perPrincipal)
	}
	for _, m := range deps.Modules {
		if err := m(r); err != nil {
			return nil, err
		}
	}
	return e, nil
}
