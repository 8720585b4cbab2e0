// Package query serves the read routes of the api from the Elasticsearch
// read models (aliases <prefix>products and <prefix>orders):
//
//	GET /v1/products/{id}[?min_version=N&wait=2s]
//	GET /v1/products?page&limit
//	GET /v1/products/search?q=…&page&limit[&min_price&max_price&in_stock&sort]
//	GET /v1/orders/{id}[?min_version=N&wait=2s]
//	GET /v1/orders?user_id=…[&status=…&page&limit]
//
// Both gets by id offer read-your-writes (get.go): a write answers the
// aggregate's version, and a read with min_version waits, bounded, until
// the read model has caught up. Soft-deleted documents are hidden (404 /
// filtered out).
//
// Every parameter is validated before Elasticsearch is called, and a bad
// one is a 400 naming it: ids are the UUIDs the api issues (and are
// path-escaped all the same), text is bounded valid UTF-8, user text is
// only ever a value inside a query DSL struct marshalled with
// encoding/json. Who may read is decided by the routes' middleware
// (internal/httpapi); the order routes then restrict a principal bound to
// users (internal/auth) to those users' orders.
package query

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/elastic/go-elasticsearch/v8"
	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"

	"cqrsflow/internal/apierr"
	"cqrsflow/internal/esindex"
)

// Limits of the read routes.
const (
	DefaultLimit = 20
	MaxLimit     = 100
	MaxWait      = 10 * time.Second
	// RequestTimeout bounds each Elasticsearch call of a read.
	RequestTimeout = 5 * time.Second
	maxWindow      = 10000 // Elasticsearch's default index.max_result_window
	maxQueryLen    = 500
)

// Response headers of the gets by id.
const (
	HeaderStale   = "X-Read-Model-Stale"
	HeaderVersion = "X-Read-Model-Version"
)

// Handler serves the read routes.
type Handler struct {
	es        *elasticsearch.Client
	products  string
	orders    string
	log       *slog.Logger
	prefix    string // index prefix of the read models' aliases
	pollEvery time.Duration
	timeout   time.Duration
	waits     WaitGate
	gets      *coalescer // nil: each get is its own GET
	searches  *coalescer // nil: each search is its own _search
}

// WaitGate bounds the read-your-writes waits in progress: each one holds
// a request and polls Elasticsearch for up to MaxWait. Enter returns
// false when the caller may not start another; otherwise leave must be
// called when the wait is over.
type WaitGate interface {
	Enter(c *gin.Context) (leave func(), ok bool)
}

// LimitWaits makes every get by id that waits (min_version with wait)
// pass gate first; over it the answer is 429.
func (h *Handler) LimitWaits(gate WaitGate) *Handler {
	h.waits = gate
	return h
}

// Batch makes the reads in flight at once go to Elasticsearch together
// (batch.go): gets by id as one _mget (cfg.Gets), searches and lists as
// one _msearch (cfg.Searches). reg (if not nil) gets the batch metrics.
func (h *Handler) Batch(cfg BatchConfig, reg prometheus.Registerer) (*Handler, error) {
	if !cfg.Gets && !cfg.Searches {
		return h, nil
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	m, err := newBatchMetrics(reg)
	if err != nil {
		return nil, err
	}
	if cfg.Gets {
		h.gets = newCoalescer(h.es, mgetKind, cfg, h.timeout, m)
	}
	if cfg.Searches {
		h.searches = newCoalescer(h.es, msearchKind, cfg, h.timeout, m)
	}
	return h, nil
}

// New returns a Handler reading the aliases <indexPrefix>products and
// <indexPrefix>orders.
func New(es *elasticsearch.Client, indexPrefix string, log *slog.Logger) *Handler {
	return &Handler{
		es: es, log: log, prefix: indexPrefix,
		products:  esindex.AliasName(indexPrefix, "products"),
		orders:    esindex.AliasName(indexPrefix, "orders"),
		pollEvery: 50 * time.Millisecond,
		timeout:   RequestTimeout,
	}
}

// Register mounts every read route on r.
func Register(r gin.IRouter, h *Handler) {
	RegisterProducts(r, h)
	RegisterOrders(r, h)
}

// RegisterProducts mounts the product routes on r. They do not look at
// the caller: whoever passes r's middleware may read the catalogue.
func RegisterProducts(r gin.IRouter, h *Handler) {
	r.GET("/v1/products/search", h.searchProducts)
	r.GET("/v1/products/:id", h.getProduct)
	r.GET("/v1/products", h.listProducts)
}

// RegisterOrders mounts the order routes on r, whose middleware must
// authenticate (auth.Set): an anonymous request gets 401, and a principal
// bound to users sees only their orders.
func RegisterOrders(r gin.IRouter, h *Handler) {
	r.GET("/v1/orders/:id", h.getOrder)
	r.GET("/v1/orders", h.listOrders)
}

// Ping checks Elasticsearch for /readyz.
func (h *Handler) Ping(ctx context.Context) error { return esindex.Ping(ctx, h.es) }

// Product is the product representation of the read API.
type Product struct {
	ID          string  `json:"id"`
	Name        string  `json:"name"`
	Description string  `json:"description"`
	Price       float64 `json:"price"`
	// Currency is the price's ISO 4217 code; absent only from documents
	// projected before events carried it (a replay fills it in: EUR).
	Currency  string    `json:"currency,omitempty"`
	Stock     int64     `json:"stock"`
	Version   int64     `json:"version"`
	Deleted   bool      `json:"deleted,omitempty"` // always false in responses (deleted → 404 or filtered)
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

func (p *Product) version() int64 { return p.Version }
func (p *Product) deleted() bool  { return p.Deleted }

// Order is the order representation of the read API.
type Order struct {
	ID         string    `json:"id"`
	UserID     string    `json:"user_id"`
	ProductID  string    `json:"product_id"`
	Quantity   int64     `json:"quantity"`
	TotalPrice float64   `json:"total_price"`
	Status     string    `json:"status"`
	Version    int64     `json:"version"`
	Deleted    bool      `json:"deleted,omitempty"` // always false in responses
	CreatedAt  time.Time `json:"created_at"`
	UpdatedAt  time.Time `json:"updated_at"`
}

func (o *Order) version() int64 { return o.Version }
func (o *Order) deleted() bool  { return o.Deleted }

// fieldError is a 400 naming the parameter.
type fieldError struct {
	field, reason string
}

func (e *fieldError) Error() string { return e.field + ": " + e.reason }

// unauthenticated answers an order route reached without a principal
// (mounted without authentication): fail closed.
func unauthenticated(c *gin.Context) {
	c.Header("WWW-Authenticate", `Bearer realm="cqrsflow"`)
	apierr.Abort(c, http.StatusUnauthorized, "unauthenticated", "missing Authorization: Bearer <API key or token>", nil)
}

func badParam(c *gin.Context, err error) {
	var fe *fieldError
	if errors.As(err, &fe) {
		apierr.Abort(c, http.StatusBadRequest, "invalid_parameter", fe.Error(), map[string]string{"field": fe.field, "reason": fe.reason})
		return
	}
	apierr.Abort(c, http.StatusBadRequest, "invalid_parameter", err.Error(), nil)
}

func (h *Handler) fail(c *gin.Context, err error) {
	if errors.Is(err, esindex.ErrUnavailable) || errors.Is(err, context.DeadlineExceeded) {
		apierr.Abort(c, http.StatusServiceUnavailable, "dependency_unavailable", "the read model (Elasticsearch) is unavailable", nil)
		return
	}
	h.log.Error("query failed", "path", c.FullPath(), "err", err)
	apierr.Abort(c, http.StatusInternalServerError, "internal", "internal error", nil)
}

func (h *Handler) ctx(c *gin.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(c.Request.Context(), h.timeout)
}
