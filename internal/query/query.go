// Package query serves the read routes of the api from the Elasticsearch
// read models (aliases <prefix>products and <prefix>orders):
//
//	GET /v1/products/{id}[?min_version=N&wait=2s]
//	GET /v1/products?page&limit
//	GET /v1/products/search?q=…&page&limit[&min_price&max_price&in_stock&sort]
//	GET /v1/orders/{id}
//	GET /v1/orders?user_id=…[&status=…&page&limit]
//
// Soft-deleted documents are hidden (404 / filtered out). User text is only
// ever a value inside a query DSL struct marshalled with encoding/json.
package query

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/elastic/go-elasticsearch/v8"
	"github.com/gin-gonic/gin"

	"cqrsflow/internal/apierr"
	"cqrsflow/internal/esindex"
)

// Limits of the read routes.
const (
	DefaultLimit = 20
	MaxLimit     = 100
	MaxWait      = 10 * time.Second
	maxWindow    = 10000 // Elasticsearch's default index.max_result_window
	maxQueryLen  = 500
)

// Response headers of read-your-writes reads.
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
	pollEvery time.Duration
	timeout   time.Duration
}

// New returns a Handler reading the aliases <indexPrefix>products and
// <indexPrefix>orders.
func New(es *elasticsearch.Client, indexPrefix string, log *slog.Logger) *Handler {
	return &Handler{
		es: es, log: log,
		products:  esindex.AliasName(indexPrefix, "products"),
		orders:    esindex.AliasName(indexPrefix, "orders"),
		pollEvery: 50 * time.Millisecond,
		timeout:   5 * time.Second,
	}
}

// Register mounts the read routes on r.
func Register(r gin.IRouter, h *Handler) {
	r.GET("/v1/products/search", h.searchProducts)
	r.GET("/v1/products/:id", h.getProduct)
	r.GET("/v1/products", h.listProducts)
	r.GET("/v1/orders/:id", h.getOrder)
	r.GET("/v1/orders", h.listOrders)
}

// Ping checks Elasticsearch for /readyz.
func (h *Handler) Ping(ctx context.Context) error { return esindex.Ping(ctx, h.es) }

// Product is the product representation of the read API.
type Product struct {
	ID          string    `json:"id"`
	Name        string    `json:"name"`
	Description string    `json:"description"`
	Price       float64   `json:"price"`
	Stock       int64     `json:"stock"`
	Version     int64     `json:"version"`
	Deleted     bool      `json:"deleted,omitempty"` // always false in responses (deleted → 404 or filtered)
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
}

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

// fieldError is a 400 naming the parameter.
type fieldError struct {
	field, reason string
}

func (e *fieldError) Error() string { return e.field + ": " + e.reason }

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

// Paging is a validated page/limit pair.
type Paging struct {
	Page, Limit int
}

func intParam(c *gin.Context, name string, def, lo, hi int) (int, error) {
	s, ok := c.GetQuery(name)
	if !ok || s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, &fieldError{name, fmt.Sprintf("%q is not an integer", s)}
	}
	if n < lo || n > hi {
		return 0, &fieldError{name, fmt.Sprintf("must be between %d and %d, got %d", lo, hi, n)}
	}
	return n, nil
}

// ParsePaging validates page (>= 1) and limit (1..100, default 20); the
// window page*limit must stay within 10000.
func ParsePaging(c *gin.Context) (Paging, error) {
	limit, err := intParam(c, "limit", DefaultLimit, 1, MaxLimit)
	if err != nil {
		return Paging{}, err
	}
	page, err := intParam(c, "page", 1, 1, maxWindow)
	if err != nil {
		return Paging{}, err
	}
	if page*limit > maxWindow {
		return Paging{}, &fieldError{"page", fmt.Sprintf("page*limit must be <= %d", maxWindow)}
	}
	return Paging{Page: page, Limit: limit}, nil
}

func floatParam(c *gin.Context, name string) (*float64, error) {
	s, ok := c.GetQuery(name)
	if !ok || s == "" {
		return nil, nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f < 0 || math.IsNaN(f) || math.IsInf(f, 0) {
		return nil, &fieldError{name, fmt.Sprintf("%q is not a number >= 0", s)}
	}
	return &f, nil
}

func (h *Handler) ctx(c *gin.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(c.Request.Context(), h.timeout)
}

// getDoc reads one document by id (realtime GET through the alias).
func (h *Handler) getDoc(ctx context.Context, index, id string, v any) (found bool, err error) {
	res, err := h.es.Get(index, id, h.es.Get.WithContext(ctx))
	if err != nil {
		return false, fmt.Errorf("%w: get %s/%s: %w", esindex.ErrUnavailable, index, id, err)
	}
	defer res.Body.Close()
	if res.StatusCode == http.StatusNotFound {
		return false, nil // document or index missing
	}
	if res.IsError() {
		b, _ := io.ReadAll(io.LimitReader(res.Body, 1024))
		e := fmt.Errorf("get %s/%s: %s: %s", index, id, res.Status(), b)
		if res.StatusCode == http.StatusTooManyRequests || res.StatusCode >= 500 {
			return false, fmt.Errorf("%w: %w", esindex.ErrUnavailable, e)
		}
		return false, e
	}
	var doc struct {
		Source json.RawMessage `json:"_source"`
	}
	if err := json.NewDecoder(res.Body).Decode(&doc); err != nil {
		return false, fmt.Errorf("%w: decoding document: %w", esindex.ErrUnavailable, err)
	}
	if err := json.Unmarshal(doc.Source, v); err != nil {
		return false, fmt.Errorf("decoding document %s: %w", id, err)
	}
	return true, nil
}

func (h *Handler) getProduct(c *gin.Context) {
	id := c.Param("id")
	minVersion, err := intParam(c, "min_version", 0, 1, 1<<62)
	if err != nil {
		badParam(c, err)
		return
	}
	wait := time.Duration(0)
	if s, ok := c.GetQuery("wait"); ok && s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d < 0 || d > MaxWait {
			badParam(c, &fieldError{"wait", fmt.Sprintf("%q is not a duration between 0s and %s", s, MaxWait)})
			return
		}
		wait = d
	}
	deadline := time.Now().Add(wait)
	for {
		ctx, cancel := h.ctx(c)
		var p Product
		found, err := h.getDoc(ctx, h.products, id, &p)
		cancel()
		if err != nil {
			h.fail(c, err)
			return
		}
		reached := found && p.Version >= int64(minVersion)
		if reached || minVersion == 0 || !time.Now().Before(deadline) || c.Request.Context().Err() != nil {
			if found {
				c.Header(HeaderVersion, strconv.FormatInt(p.Version, 10))
			}
			if minVersion > 0 && !reached {
				c.Header(HeaderStale, "true")
			}
			if !found || p.Deleted {
				apierr.Abort(c, http.StatusNotFound, "not_found", "product not found", map[string]string{"id": id})
				return
			}
			c.JSON(http.StatusOK, p)
			return
		}
		select {
		case <-c.Request.Context().Done():
		case <-time.After(min(h.pollEvery, time.Until(deadline))):
		}
	}
}

func (h *Handler) getOrder(c *gin.Context) {
	id := c.Param("id")
	ctx, cancel := h.ctx(c)
	defer cancel()
	var o Order
	found, err := h.getDoc(ctx, h.orders, id, &o)
	if err != nil {
		h.fail(c, err)
		return
	}
	if !found || o.Deleted {
		apierr.Abort(c, http.StatusNotFound, "not_found", "order not found", map[string]string{"id": id})
		return
	}
	c.Header(HeaderVersion, strconv.FormatInt(o.Version, 10))
	c.JSON(http.StatusOK, o)
}

// Page is a list response.
type Page[T any] struct {
	Items []T `json:"items"`
	Page  int `json:"page"`
	Limit int `json:"limit"`
	Total int `json:"total"`
}

type obj = map[string]any

// search runs body on index; a missing index reads as no hits.
func search[T any](ctx context.Context, es *elasticsearch.Client, index string, body obj, pg Paging) (Page[T], error) {
	out := Page[T]{Items: []T{}, Page: pg.Page, Limit: pg.Limit}
	body["from"] = (pg.Page - 1) * pg.Limit
	body["size"] = pg.Limit
	body["track_total_hits"] = true
	b, err := json.Marshal(body)
	if err != nil {
		return out, fmt.Errorf("encoding query: %w", err)
	}
	res, err := es.Search(es.Search.WithIndex(index), es.Search.WithBody(bytes.NewReader(b)), es.Search.WithContext(ctx))
	if err != nil {
		return out, fmt.Errorf("%w: search %s: %w", esindex.ErrUnavailable, index, err)
	}
	defer res.Body.Close()
	if res.StatusCode == http.StatusNotFound {
		return out, nil
	}
	if res.IsError() {
		rb, _ := io.ReadAll(io.LimitReader(res.Body, 1024))
		e := fmt.Errorf("search %s: %s: %s", index, res.Status(), rb)
		if res.StatusCode == http.StatusTooManyRequests || res.StatusCode >= 500 {
			return out, fmt.Errorf("%w: %w", esindex.ErrUnavailable, e)
		}
		return out, e
	}
	var r struct {
		Hits struct {
			Total struct {
				Value int `json:"value"`
			} `json:"total"`
			Hits []struct {
				Source T `json:"_source"`
			} `json:"hits"`
		} `json:"hits"`
	}
	if err := json.NewDecoder(res.Body).Decode(&r); err != nil {
		return out, fmt.Errorf("%w: decoding search response: %w", esindex.ErrUnavailable, err)
	}
	out.Total = r.Hits.Total.Value
	for _, hit := range r.Hits.Hits {
		out.Items = append(out.Items, hit.Source)
	}
	return out, nil
}

var notDeleted = obj{"term": obj{"deleted": true}}

func (h *Handler) listProducts(c *gin.Context) {
	pg, err := ParsePaging(c)
	if err != nil {
		badParam(c, err)
		return
	}
	body := obj{
		"query": obj{"bool": obj{"must_not": []any{notDeleted}}},
		"sort":  []any{obj{"created_at": "asc"}, obj{"id": "asc"}},
	}
	ctx, cancel := h.ctx(c)
	defer cancel()
	page, err := search[Product](ctx, h.es, h.products, body, pg)
	if err != nil {
		h.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, page)
}

// SearchParams are the validated parameters of /v1/products/search.
type SearchParams struct {
	Q                  string
	MinPrice, MaxPrice *float64
	InStock            bool
	Sort               string
	Paging
}

var sorts = map[string][]any{
	"":       {obj{"_score": "desc"}, obj{"id": "asc"}},
	"price":  {obj{"price": "asc"}, obj{"id": "asc"}},
	"-price": {obj{"price": "desc"}, obj{"id": "asc"}},
	"name":   {obj{"name.sort": "asc"}, obj{"id": "asc"}},
	"-name":  {obj{"name.sort": "desc"}, obj{"id": "asc"}},
}

// ParseSearch validates the search parameters.
func ParseSearch(c *gin.Context) (SearchParams, error) {
	var p SearchParams
	var err error
	if p.Paging, err = ParsePaging(c); err != nil {
		return p, err
	}
	p.Q = c.Query("q")
	if p.Q == "" {
		return p, &fieldError{"q", "is required"}
	}
	if len(p.Q) > maxQueryLen {
		return p, &fieldError{"q", fmt.Sprintf("longer than %d bytes", maxQueryLen)}
	}
	if p.MinPrice, err = floatParam(c, "min_price"); err != nil {
		return p, err
	}
	if p.MaxPrice, err = floatParam(c, "max_price"); err != nil {
		return p, err
	}
	if p.MinPrice != nil && p.MaxPrice != nil && *p.MinPrice > *p.MaxPrice {
		return p, &fieldError{"max_price", "must be >= min_price"}
	}
	if s, ok := c.GetQuery("in_stock"); ok && s != "" {
		if p.InStock, err = strconv.ParseBool(s); err != nil {
			return p, &fieldError{"in_stock", fmt.Sprintf("%q is not a boolean", s)}
		}
	}
	p.Sort = c.Query("sort")
	if _, ok := sorts[p.Sort]; !ok {
		return p, &fieldError{"sort", fmt.Sprintf("%q is not one of price, -price, name, -name", p.Sort)}
	}
	return p, nil
}

// SearchBody builds the query DSL of a product search; q is a value, never
// spliced into JSON text.
func SearchBody(p SearchParams) map[string]any {
	filter := []any{}
	if p.MinPrice != nil || p.MaxPrice != nil {
		r := obj{}
		if p.MinPrice != nil {
			r["gte"] = *p.MinPrice
		}
		if p.MaxPrice != nil {
			r["lte"] = *p.MaxPrice
		}
		filter = append(filter, obj{"range": obj{"price": r}})
	}
	if p.InStock {
		filter = append(filter, obj{"range": obj{"stock": obj{"gt": 0}}})
	}
	return obj{
		"query": obj{"bool": obj{
			"must":     []any{obj{"multi_match": obj{"query": p.Q, "fields": []string{"name^2", "description"}}}},
			"filter":   filter,
			"must_not": []any{notDeleted},
		}},
		"sort": sorts[p.Sort],
	}
}

func (h *Handler) searchProducts(c *gin.Context) {
	p, err := ParseSearch(c)
	if err != nil {
		badParam(c, err)
		return
	}
	ctx, cancel := h.ctx(c)
	defer cancel()
	page, err := search[Product](ctx, h.es, h.products, SearchBody(p), p.Paging)
	if err != nil {
		h.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, page)
}

var orderStatuses = map[string]bool{"created": true, "paid": true, "shipped": true, "cancelled": true}

func (h *Handler) listOrders(c *gin.Context) {
	pg, err := ParsePaging(c)
	if err != nil {
		badParam(c, err)
		return
	}
	user := c.Query("user_id")
	if user == "" || len(user) > 100 {
		badParam(c, &fieldError{"user_id", "is required (1..100 characters)"})
		return
	}
	filter := []any{obj{"term": obj{"user_id": user}}}
	if s := c.Query("status"); s != "" {
		if !orderStatuses[s] {
			badParam(c, &fieldError{"status", fmt.Sprintf("%q is not one of created, paid, shipped, cancelled", s)})
			return
		}
		filter = append(filter, obj{"term": obj{"status": s}})
	}
	body := obj{
		"query": obj{"bool": obj{"filter": filter, "must_not": []any{notDeleted}}},
		"sort":  []any{obj{"created_at": "desc"}, obj{"id": "asc"}},
	}
	ctx, cancel := h.ctx(c)
	defer cancel()
	page, err := search[Order](ctx, h.es, h.orders, body, pg)
	if err != nil {
		h.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, page)
}
