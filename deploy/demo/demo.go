package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
	"golang.org/x/time/rate"

	"cqrsflow/internal/config"
)

type cfg struct {
	APIURL     string
	APIKey     string
	APIKeyFile string
	Duration   time.Duration
	Rate       int
	Workers    int
}

// register registers the demo's settings, each once with its default.
func (c *cfg) register(s *config.Set) {
	s.String(&c.APIURL, "API_URL", "http://127.0.0.1:8080", "cqrsflow api base URL (loopback only)")
	s.Secret(&c.APIKey, "API_KEY", "API key (default: first line of API_KEY_FILE)")
	s.String(&c.APIKeyFile, "API_KEY_FILE", filepath.Join(config.StateDir(), "api-key"), "file holding the API key `make run` created")
	s.Duration(&c.Duration, "DEMO_DURATION", 2*time.Minute, "how long to send load")
	s.Int(&c.Rate, "DEMO_RATE", 20, "requests per second (all workers together)")
	s.Int(&c.Workers, "DEMO_WORKERS", 4, "concurrent clients")
}

// validate reports every problem at once and reads the key file.
func (c *cfg) validate() error {
	var errs []error
	u, err := url.Parse(c.APIURL)
	if err != nil || u.Scheme != "http" && u.Scheme != "https" {
		errs = append(errs, fmt.Errorf("API_URL %q: want http://host:port", c.APIURL))
	} else if ip := net.ParseIP(u.Hostname()); u.Hostname() != "localhost" && (ip == nil || !ip.IsLoopback()) {
		errs = append(errs, fmt.Errorf("API_URL %q: the demo only loads a loopback API (127.0.0.1, ::1, localhost)", c.APIURL))
	}
	if c.APIKey == "" {
		b, err := os.ReadFile(c.APIKeyFile)
		if err != nil {
			errs = append(errs, fmt.Errorf("API_KEY_FILE: %w (start the pipeline with `make run`, or set API_KEY)", err))
		} else {
			c.APIKey = strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0])
		}
	}
	if c.Duration <= 0 || c.Duration > 24*time.Hour {
		errs = append(errs, fmt.Errorf("DEMO_DURATION %s: want between 1s and 24h", c.Duration))
	}
	if c.Rate < 1 || c.Rate > 2000 {
		errs = append(errs, fmt.Errorf("DEMO_RATE %d: want 1..2000", c.Rate))
	}
	if c.Workers < 1 || c.Workers > 64 {
		errs = append(errs, fmt.Errorf("DEMO_WORKERS %d: want 1..64", c.Workers))
	}
	c.APIURL = strings.TrimRight(c.APIURL, "/")
	return errors.Join(errs...)
}

func run(ctx context.Context, c cfg, log *slog.Logger) error {
	d := &demo{cfg: c, http: &http.Client{Timeout: 10 * time.Second}, stats: newStats()}
	ctx, cancel := context.WithTimeout(ctx, c.Duration)
	defer cancel()
	lim := rate.NewLimiter(rate.Limit(c.Rate), c.Workers)
	g, gctx := errgroup.WithContext(ctx)
	for w := range c.Workers {
		rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), uint64(w)))
		g.Go(func() error {
			for lim.Wait(gctx) == nil {
				d.step(gctx, rng)
			}
			return nil
		})
	}
	g.Go(func() error {
		t := time.NewTicker(10 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-gctx.Done():
				return nil
			case <-t.C:
				log.Info("progress", "requests", d.stats.total(), "by_class", d.stats.classes())
			}
		}
	})
	_ = g.Wait()
	d.stats.print(os.Stdout)
	if d.stats.total() == 0 {
		return errors.New("no request was sent")
	}
	if n := d.stats.count("transport error"); n*2 > d.stats.total() {
		return fmt.Errorf("%d of %d requests failed to reach the api at %s", n, d.stats.total(), c.APIURL)
	}
	return nil
}

type entity struct {
	id      string
	version int64
	state   string // product: live|deleted; order: created|paid|shipped|cancelled
	price   int64  // cents (products)
	name    string // products
	user    string // orders
}

type demo struct {
	cfg  cfg
	http *http.Client

	mu       sync.Mutex
	products []*entity
	orders   []*entity

	stats *stats
}

var words = []string{"espresso", "grinder", "kettle", "teapot", "mug", "filter", "scale", "tamper", "milk jug", "roaster"}
var adjectives = []string{"stainless", "ceramic", "compact", "professional", "travel", "electric", "manual", "glass"}

func money(cents int64) json.Number { return json.Number(fmt.Sprintf("%d.%02d", cents/100, cents%100)) }

// pick returns a copy of a random product (orders=false) or order that
// satisfies ok, nil if none was found in a few tries.
func (d *demo) pick(orders bool, rng *rand.Rand, ok func(*entity) bool) *entity {
	d.mu.Lock()
	defer d.mu.Unlock()
	list := d.products
	if orders {
		list = d.orders
	}
	for range 8 {
		if len(list) == 0 {
			return nil
		}
		e := list[rng.IntN(len(list))]
		if ok(e) {
			cp := *e
			return &cp
		}
	}
	return nil
}

func (d *demo) setVersion(orders bool, id string, version int64, state string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	list := d.products
	if orders {
		list = d.orders
	}
	for _, e := range list {
		if e.id == id {
			if version > e.version {
				e.version = version
			}
			if state != "" {
				e.state = state
			}
		}
	}
}

// step sends one request of the mix.
func (d *demo) step(ctx context.Context, rng *rand.Rand) {
	r := rng.IntN(100)
	d.mu.Lock()
	few := len(d.products) < 5
	d.mu.Unlock()
	switch {
	case r < 22 || few:
		d.createProduct(ctx, rng)
	case r < 40:
		d.updateProduct(ctx, rng)
	case r < 42:
		d.deleteProduct(ctx, rng)
	case r < 60:
		d.createOrder(ctx, rng)
	case r < 72:
		d.advanceOrder(ctx, rng)
	case r < 84:
		d.readProductRYW(ctx, rng)
	case r < 92:
		d.searchProducts(ctx, rng)
	case r < 96:
		d.readOrder(ctx, rng)
	case r < 98:
		d.listProducts(ctx, rng)
	default:
		d.badOrder(ctx, rng)
	}
}

func liveProduct(e *entity) bool { return e.state == "live" }

// createProduct creates a product.
func (d *demo) createProduct(ctx context.Context, rng *rand.Rand) {
	name := adjectives[rng.IntN(len(adjectives))] + " " + words[rng.IntN(len(words))]
	price := int64(500 + rng.IntN(50000))
	var out struct {
		ID      string `json:"id"`
		Version int64  `json:"version"`
	}
	if d.do(ctx, "POST", "/v1/products", "/v1/products", nil, map[string]any{
		"name": name, "description": "A " + name + " for the demo shop", "price": money(price), "stock": 1 + rng.IntN(100),
	}, &out) == http.StatusCreated {
		d.mu.Lock()
		d.products = append(d.products, &entity{id: out.ID, version: out.Version, state: "live", price: price, name: name})
		d.mu.Unlock()
	}
}

// updateProduct updates a live product, sometimes from a stale version (409).
func (d *demo) updateProduct(ctx context.Context, rng *rand.Rand) {
	p := d.pick(false, rng, liveProduct)
	if p == nil {
		return
	}
	v := p.version
	if rng.IntN(8) == 0 && v > 1 {
		v-- // a client editing a stale copy: 409
	}
	var out struct {
		Version int64 `json:"version"`
	}
	if d.do(ctx, "PUT", "/v1/products/"+p.id, "/v1/products/:id", map[string]string{"If-Match": strconv.FormatInt(v, 10)},
		map[string]any{"name": p.name, "description": "A " + p.name + ", now in stock again",
			"price": money(p.price + int64(rng.IntN(2000))), "stock": rng.IntN(100)}, &out) == http.StatusOK {
		d.setVersion(false, p.id, out.Version, "")
	}
}

// deleteProduct deletes a live product.
func (d *demo) deleteProduct(ctx context.Context, rng *rand.Rand) {
	p := d.pick(false, rng, liveProduct)
	if p == nil {
		return
	}
	var out struct {
		Version int64 `json:"version"`
	}
	if d.do(ctx, "DELETE", "/v1/products/"+p.id, "/v1/products/:id", nil, map[string]any{"reason": "discontinued"}, &out) == http.StatusOK {
		d.setVersion(false, p.id, out.Version, "deleted")
	}
}

// createOrder orders a live product, sometimes through the seed tutorial's endpoint.
func (d *demo) createOrder(ctx context.Context, rng *rand.Rand) {
	p := d.pick(false, rng, liveProduct)
	if p == nil {
		return
	}
	qty := int64(1 + rng.IntN(4))
	user := fmt.Sprintf("user-%d", rng.IntN(50))
	var out struct {
		ID      string `json:"id"`
		Version int64  `json:"version"`
	}
	path, want := "/v1/orders", http.StatusCreated
	if rng.IntN(20) == 0 {
		path, want = "/api/commands/order/create", http.StatusAccepted // the seed tutorial's endpoint
	}
	if d.do(ctx, "POST", path, path, nil, map[string]any{
		"user_id": user, "product_id": p.id, "quantity": qty, "total_price": money(qty * p.price),
	}, &out) == want && out.ID != "" {
		d.mu.Lock()
		d.orders = append(d.orders, &entity{id: out.ID, version: out.Version, state: "created", user: user})
		d.mu.Unlock()
	}
}

// advanceOrder pays, ships or cancels an order.
func (d *demo) advanceOrder(ctx context.Context, rng *rand.Rand) {
	next := map[string]struct{ action, field, state string }{
		"created": {"pay", "payment_reference", "paid"},
		"paid":    {"ship", "tracking_number", "shipped"},
	}
	o := d.pick(true, rng, func(e *entity) bool { _, ok := next[e.state]; return ok })
	if o == nil {
		return
	}
	n := next[o.state]
	if rng.IntN(6) == 0 {
		n.action, n.field, n.state = "cancel", "reason", "cancelled"
	}
	var out struct {
		Version int64 `json:"version"`
	}
	if d.do(ctx, "POST", "/v1/orders/"+o.id+"/"+n.action, "/v1/orders/:id/"+n.action,
		map[string]string{"If-Match": strconv.FormatInt(o.version, 10)},
		map[string]any{n.field: fmt.Sprintf("%s-%06d", n.action, rng.IntN(1000000))}, &out) == http.StatusOK {
		d.setVersion(true, o.id, out.Version, n.state)
	}
}

// readProductRYW reads a product back at the version written (read-your-writes).
func (d *demo) readProductRYW(ctx context.Context, rng *rand.Rand) {
	// read-your-writes: wait until the read model has the version we wrote
	p := d.pick(false, rng, func(*entity) bool { return true })
	if p == nil {
		return
	}
	d.do(ctx, "GET", fmt.Sprintf("/v1/products/%s?min_version=%d&wait=2s", p.id, p.version), "/v1/products/:id", nil, nil, nil)
}

// searchProducts searches products by a word.
func (d *demo) searchProducts(ctx context.Context, rng *rand.Rand) {
	d.do(ctx, "GET", "/v1/products/search?q="+url.QueryEscape(words[rng.IntN(len(words))])+"&limit=10", "/v1/products/search", nil, nil, nil)
}

// readOrder reads an order or lists a user's orders.
func (d *demo) readOrder(ctx context.Context, rng *rand.Rand) {
	o := d.pick(true, rng, func(*entity) bool { return true })
	if o == nil {
		return
	}
	if rng.IntN(2) == 0 {
		d.do(ctx, "GET", "/v1/orders/"+o.id, "/v1/orders/:id", nil, nil, nil)
	} else {
		d.do(ctx, "GET", "/v1/orders?user_id="+url.QueryEscape(o.user), "/v1/orders", nil, nil, nil)
	}
}

// listProducts lists products.
func (d *demo) listProducts(ctx context.Context, _ *rand.Rand) {
	d.do(ctx, "GET", "/v1/products?page=1&limit=20", "/v1/products", nil, nil, nil)
}

// badOrder sends a client bug: a negative quantity, answered 400 naming the field.
func (d *demo) badOrder(ctx context.Context, _ *rand.Rand) {
	// a client bug: a negative quantity → 400 naming the field
	d.do(ctx, "POST", "/v1/orders", "/v1/orders", nil, map[string]any{
		"user_id": "user-1", "product_id": "p", "quantity": -1, "total_price": money(100),
	}, nil)
}

// do sends one request and records its outcome under route; it returns the
// status code (0 on a transport error).
func (d *demo) do(ctx context.Context, method, path, route string, hdr map[string]string, body any, out any) int {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			panic(err) // only our own literals are marshalled
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, d.cfg.APIURL+path, rd)
	if err != nil {
		d.stats.add(method+" "+route, "transport error")
		return 0
	}
	req.Header.Set("Authorization", "Bearer "+d.cfg.APIKey)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := d.http.Do(req)
	if err != nil {
		if ctx.Err() == nil {
			d.stats.add(method+" "+route, "transport error")
		}
		return 0
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	d.stats.add(method+" "+route, strconv.Itoa(resp.StatusCode))
	if out != nil && resp.StatusCode < 300 {
		_ = json.Unmarshal(b, out)
	}
	return resp.StatusCode
}

type stats struct {
	mu sync.Mutex
	m  map[string]map[string]int // route → code → n
}

func newStats() *stats { return &stats{m: map[string]map[string]int{}} }

func (s *stats) add(route, code string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m[route] == nil {
		s.m[route] = map[string]int{}
	}
	s.m[route][code]++
}

func (s *stats) total() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, codes := range s.m {
		for _, c := range codes {
			n += c
		}
	}
	return n
}

func (s *stats) count(code string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, codes := range s.m {
		n += codes[code]
	}
	return n
}

func (s *stats) classes() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]int{}
	for _, codes := range s.m {
		for code, n := range codes {
			k := code
			if len(code) == 3 {
				k = code[:1] + "xx"
			}
			out[k] += n
		}
	}
	return out
}

func (s *stats) print(w io.Writer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	routes := make([]string, 0, len(s.m))
	for r := range s.m {
		routes = append(routes, r)
	}
	sort.Strings(routes)
	fmt.Fprintln(w, "demo summary (requests by route and status):")
	for _, r := range routes {
		codes := make([]string, 0, len(s.m[r]))
		for c, n := range s.m[r] {
			codes = append(codes, fmt.Sprintf("%s×%d", c, n))
		}
		sort.Strings(codes)
		fmt.Fprintf(w, "  %-36s %s\n", r, strings.Join(codes, " "))
	}
}
