//go:build integration

package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"cqrsflow/internal/envelope"
	"cqrsflow/internal/eventschema"
	"cqrsflow/internal/eventstore"
	"cqrsflow/internal/obs"
	"cqrsflow/internal/testenv"
)

const testKey = "test-key-0123456789abcdef"

type env struct {
	t   *testing.T
	e   *gin.Engine
	pg  *testenv.PG
	reg *prometheus.Registry
}

func newEnv(t *testing.T, mod func(*Config)) *env {
	t.Helper()
	pg := testenv.Postgres(t)
	return newEnvWithPool(t, pg, pg.Pool, mod)
}

func newEnvWithPool(t *testing.T, pg *testenv.PG, pool *pgxpool.Pool, mod func(*Config)) *env {
	t.Helper()
	cfg := DefaultConfig()
	cfg.RateLimitRPS = 0
	if mod != nil {
		mod(&cfg)
	}
	schemas, err := eventschema.Load()
	if err != nil {
		t.Fatal(err)
	}
	store := eventstore.New(pool)
	reg := prometheus.NewRegistry()
	e, err := NewEngine(cfg, Deps{Store: store, Schemas: schemas, Auth: unitAuth(t, "tester:"+testKey), Registerer: reg, Gatherer: reg,
		Modules: modules(nil),
		// Uncached: the outage tests expect /readyz to follow PostgreSQL at once.
		Health: obs.NewHealth(map[string]obs.CheckFunc{"postgres": store.Ping}).CacheFor(0)})
	if err != nil {
		t.Fatal(err)
	}
	return &env{t: t, e: e, pg: pg, reg: reg}
}

type resp struct {
	code int
	body string
	hdr  http.Header
}

func (r resp) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(r.body), &m); err != nil {
		t.Fatalf("response is not JSON: %q", r.body)
	}
	return m
}

// do sends a request; hdr entries "Header: value"; auth with the test key unless a header sets Authorization.
func (e *env) do(method, path, body string, hdr ...string) resp {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, path, rd)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+testKey)
	for _, h := range hdr {
		k, v, _ := strings.Cut(h, ": ")
		if v == "" {
			req.Header.Del(k)
		} else {
			req.Header.Set(k, v)
		}
	}
	w := httptest.NewRecorder()
	e.e.ServeHTTP(w, req)
	return resp{w.Code, w.Body.String(), w.Header()}
}

func (e *env) count(sql string, args ...any) int {
	e.t.Helper()
	var n int
	if err := e.pg.Pool.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		e.t.Fatalf("%s: %v", sql, err)
	}
	return n
}

func (e *env) createProduct() string {
	e.t.Helper()
	r := e.do("POST", "/v1/products", `{"name":"Lamp","description":"bright","price":19.99,"stock":3}`)
	if r.code != 201 {
		e.t.Fatalf("create product: %d %s", r.code, r.body)
	}
	return r.json(e.t)["id"].(string)
}

func (e *env) createOrder() string {
	e.t.Helper()
	r := e.do("POST", "/v1/orders", `{"user_id":"u1","product_id":"p1","quantity":2,"total_price":39.98}`)
	if r.code != 201 {
		e.t.Fatalf("create order: %d %s", r.code, r.body)
	}
	return r.json(e.t)["id"].(string)
}

func TestProductLifecycle(t *testing.T) {
	e := newEnv(t, nil)
	r := e.do("POST", "/v1/products", `{"name":"Lamp","description":"bright","price":19.99,"stock":3}`,
		"X-Request-ID: req-1")
	if r.code != 201 || r.hdr.Get("X-Request-ID") != "req-1" {
		t.Fatalf("create: %d %s %v", r.code, r.body, r.hdr)
	}
	m := r.json(t)
	id := m["id"].(string)
	if _, err := uuid.Parse(id); err != nil || m["version"] != 1.0 {
		t.Fatalf("create body %s", r.body)
	}
	var payload map[string]any
	var meta envelope.Metadata
	err := e.pg.Pool.QueryRow(context.Background(),
		`SELECT payload, metadata FROM events WHERE aggregate_id = $1 AND version = 1`, id).Scan(&payload, &meta)
	if err != nil {
		t.Fatal(err)
	}
	if payload["price"] != 19.99 || payload["stock"] != 3.0 || payload["name"] != "Lamp" {
		t.Errorf("payload %v", payload)
	}
	if meta.RequestID != "req-1" || meta.CorrelationID != "req-1" || meta.Principal != "tester" {
		t.Errorf("metadata %+v", meta)
	}
	if strings.Contains(fmt.Sprint(meta), testKey) {
		t.Error("the API key leaked into metadata")
	}

	upd := `{"name":"Lamp 2","description":"","price":25,"stock":0}`
	if r := e.do("PUT", "/v1/products/"+id, upd, `If-Match: "1"`); r.code != 200 || r.json(t)["version"] != 2.0 {
		t.Fatalf("update: %d %s", r.code, r.body)
	}
	r = e.do("PUT", "/v1/products/"+id, upd, "If-Match: 1")
	if r.code != 409 {
		t.Fatalf("stale update: %d %s", r.code, r.body)
	}
	details := r.json(t)["error"].(map[string]any)["details"].(map[string]any)
	if details["current_version"] != 2.0 || details["expected_version"] != 1.0 {
		t.Fatalf("409 body %s", r.body)
	}
	if v := testutil.ToFloat64(e.mustCounter("cqrsflow_command_conflicts_total", "product")); v != 1 {
		t.Errorf("conflicts metric %v", v)
	}
	// expected_version in the body works like If-Match; both differing → 400.
	if r := e.do("PUT", "/v1/products/"+id, `{"name":"x","price":1,"stock":1,"expected_version":2}`); r.code != 200 {
		t.Fatalf("update with expected_version: %d %s", r.code, r.body)
	}
	if r := e.do("PUT", "/v1/products/"+id, `{"name":"x","price":1,"stock":1,"expected_version":3}`, "If-Match: 2"); r.code != 400 ||
		!strings.Contains(r.body, "expected_version") {
		t.Fatalf("If-Match vs expected_version: %d %s", r.code, r.body)
	}
	if r := e.do("DELETE", "/v1/products/"+id, ""); r.code != 200 || r.json(t)["version"] != 4.0 {
		t.Fatalf("delete: %d %s", r.code, r.body)
	}
	if r := e.do("PUT", "/v1/products/"+id, upd); r.code != 422 || !strings.Contains(r.body, "product_deleted") {
		t.Fatalf("update after delete: %d %s", r.code, r.body)
	}
	if r := e.do("DELETE", "/v1/products/"+id, `{"reason":"again"}`); r.code != 422 {
		t.Fatalf("delete twice: %d %s", r.code, r.body)
	}
	unknown := uuid.NewString()
	for _, r := range []resp{
		e.do("PUT", "/v1/products/"+unknown, upd),
		e.do("PUT", "/v1/products/"+unknown, upd, "If-Match: 3"),
		e.do("DELETE", "/v1/products/"+unknown, ""),
		e.do("POST", "/v1/orders/"+unknown+"/pay", ""),
	} {
		if r.code != 404 || r.json(t)["error"].(map[string]any)["code"] != "not_found" {
			t.Errorf("unknown id: %d %s", r.code, r.body)
		}
	}
	if n := e.count(`SELECT count(*) FROM outbox`); n != 4 {
		t.Errorf("outbox rows %d, want 4", n)
	}
	if v := testutil.ToFloat64(e.mustCounter("cqrsflow_events_appended_total", "product", "ProductUpdated")); v != 2 {
		t.Errorf("appended metric %v", v)
	}
	if c := testutil.CollectAndCount(e.reg, "cqrsflow_http_request_duration_seconds"); c == 0 {
		t.Error("no request duration series")
	}
}

// mustCounter finds a counter of the test registry by name and label values.
func (e *env) mustCounter(name string, labels ...string) prometheus.Collector {
	e.t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		e.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			var vals []string
			for _, l := range m.GetLabel() {
				vals = append(vals, l.GetValue())
			}
			if strings.Join(vals, ",") == strings.Join(labels, ",") {
				c := prometheus.NewCounter(prometheus.CounterOpts{Name: "x"})
				c.Add(m.GetCounter().GetValue())
				return c
			}
		}
	}
	e.t.Fatalf("no %s%v", name, labels)
	return nil
}

func TestValidationEveryFieldRule(t *testing.T) {
	e := newEnv(t, nil)
	pid := e.createProduct()
	oid := e.createOrder()
	long := func(n int) string { return strings.Repeat("x", n) }
	cases := []struct {
		name, method, path, body string
		hdr                      []string
		field                    string
	}{
		{"name missing", "POST", "/v1/products", `{"price":1,"stock":1}`, nil, "name"},
		{"name empty", "POST", "/v1/products", `{"name":"","price":1,"stock":1}`, nil, "name"},
		{"name blank", "POST", "/v1/products", `{"name":"   ","price":1,"stock":1}`, nil, "name"},
		{"name too long", "POST", "/v1/products", `{"name":"` + long(201) + `","price":1,"stock":1}`, nil, "name"},
		{"name not string", "POST", "/v1/products", `{"name":5,"price":1,"stock":1}`, nil, "name"},
		{"name null", "POST", "/v1/products", `{"name":null,"price":1,"stock":1}`, nil, "name"},
		{"name with NUL", "POST", "/v1/products", `{"name":"a\u0000b","price":1,"stock":1}`, nil, "name"},
		{"description too long", "POST", "/v1/products", `{"name":"a","description":"` + long(5001) + `","price":1,"stock":1}`, nil, "description"},
		{"description not string", "POST", "/v1/products", `{"name":"a","description":[],"price":1,"stock":1}`, nil, "description"},
		{"price missing", "POST", "/v1/products", `{"name":"a","stock":1}`, nil, "price"},
		{"price negative", "POST", "/v1/products", `{"name":"a","price":-0.01,"stock":1}`, nil, "price"},
		{"price 3 decimals", "POST", "/v1/products", `{"name":"a","price":1.005,"stock":1}`, nil, "price"},
		{"price string", "POST", "/v1/products", `{"name":"a","price":"1","stock":1}`, nil, "price"},
		{"price huge exponent", "POST", "/v1/products", `{"name":"a","price":1e999999,"stock":1}`, nil, "price"},
		{"price too large", "POST", "/v1/products", `{"name":"a","price":1e12,"stock":1}`, nil, "price"},
		{"stock missing", "POST", "/v1/products", `{"name":"a","price":1}`, nil, "stock"},
		{"stock negative", "POST", "/v1/products", `{"name":"a","price":1,"stock":-1}`, nil, "stock"},
		{"stock fractional", "POST", "/v1/products", `{"name":"a","price":1,"stock":0.5}`, nil, "stock"},
		{"stock bool", "POST", "/v1/products", `{"name":"a","price":1,"stock":true}`, nil, "stock"},
		{"unknown field", "POST", "/v1/products", `{"name":"a","price":1,"stock":1,"colour":"red"}`, nil, "colour"},
		{"not an object", "POST", "/v1/products", `[1,2]`, nil, "body"},
		{"malformed json", "POST", "/v1/products", `{"name":`, nil, "body"},
		{"trailing data", "POST", "/v1/products", `{"name":"a","price":1,"stock":1} {}`, nil, "body"},
		{"empty body", "POST", "/v1/products", ` `, nil, "body"},
		{"null body", "POST", "/v1/products", `null`, nil, "body"},
		{"update bad id", "PUT", "/v1/products/not-a-uuid", `{"name":"a","price":1,"stock":1}`, nil, "id"},
		{"update bad If-Match", "PUT", "/v1/products/" + pid, `{"name":"a","price":1,"stock":1}`, []string{"If-Match: abc"}, "If-Match"},
		{"update If-Match zero", "PUT", "/v1/products/" + pid, `{"name":"a","price":1,"stock":1}`, []string{"If-Match: 0"}, "If-Match"},
		{"update expected_version string", "PUT", "/v1/products/" + pid, `{"name":"a","price":1,"stock":1,"expected_version":"1"}`, nil, "expected_version"},
		{"update expected_version 0", "PUT", "/v1/products/" + pid, `{"name":"a","price":1,"stock":1,"expected_version":0}`, nil, "expected_version"},
		{"update price invalid", "PUT", "/v1/products/" + pid, `{"name":"a","price":-5,"stock":1}`, nil, "price"},
		{"delete reason too long", "DELETE", "/v1/products/" + pid, `{"reason":"` + long(1001) + `"}`, nil, "reason"},
		{"delete unknown field", "DELETE", "/v1/products/" + pid, `{"why":"x"}`, nil, "why"},
		{"user_id missing", "POST", "/v1/orders", `{"product_id":"p","quantity":1,"total_price":1}`, nil, "user_id"},
		{"user_id too long", "POST", "/v1/orders", `{"user_id":"` + long(101) + `","product_id":"p","quantity":1,"total_price":1}`, nil, "user_id"},
		{"product_id missing", "POST", "/v1/orders", `{"user_id":"u","quantity":1,"total_price":1}`, nil, "product_id"},
		{"product_id empty", "POST", "/v1/orders", `{"user_id":"u","product_id":"","quantity":1,"total_price":1}`, nil, "product_id"},
		{"quantity zero", "POST", "/v1/orders", `{"user_id":"u","product_id":"p","quantity":0,"total_price":1}`, nil, "quantity"},
		{"quantity negative", "POST", "/v1/orders", `{"user_id":"u","product_id":"p","quantity":-2,"total_price":1}`, nil, "quantity"},
		{"quantity fractional", "POST", "/v1/orders", `{"user_id":"u","product_id":"p","quantity":1.5,"total_price":1}`, nil, "quantity"},
		{"quantity missing", "POST", "/v1/orders", `{"user_id":"u","product_id":"p","total_price":1}`, nil, "quantity"},
		{"total_price negative", "POST", "/v1/orders", `{"user_id":"u","product_id":"p","quantity":1,"total_price":-1}`, nil, "total_price"},
		{"total_price 3 decimals", "POST", "/v1/orders", `{"user_id":"u","product_id":"p","quantity":1,"total_price":0.001}`, nil, "total_price"},
		{"total_price missing", "POST", "/v1/orders", `{"user_id":"u","product_id":"p","quantity":1}`, nil, "total_price"},
		{"seed quantity zero", "POST", "/api/commands/order/create", `{"user_id":"u","product_id":"p","quantity":0,"total_price":1}`, nil, "quantity"},
		{"pay reference not string", "POST", "/v1/orders/" + oid + "/pay", `{"payment_reference":1}`, nil, "payment_reference"},
		{"ship tracking too long", "POST", "/v1/orders/" + oid + "/ship", `{"tracking_number":"` + long(201) + `"}`, nil, "tracking_number"},
		{"cancel unknown field", "POST", "/v1/orders/" + oid + "/cancel", `{"reference":"x"}`, nil, "reference"},
		{"action bad id", "POST", "/v1/orders/123/pay", ``, nil, "id"},
		{"idempotency key too long", "POST", "/v1/orders", `{"user_id":"u","product_id":"p","quantity":1,"total_price":1}`, []string{"Idempotency-Key: " + long(256)}, "Idempotency-Key"},
		{"idempotency key with space", "POST", "/v1/orders", `{"user_id":"u","product_id":"p","quantity":1,"total_price":1}`, []string{"Idempotency-Key: a b"}, "Idempotency-Key"},
		{"correlation id invalid", "POST", "/v1/orders", `{"user_id":"u","product_id":"p","quantity":1,"total_price":1}`, []string{"X-Correlation-ID: a b"}, "X-Correlation-ID"},
	}
	before := e.count(`SELECT count(*) FROM events`)
	for _, c := range cases {
		r := e.do(c.method, c.path, c.body, c.hdr...)
		if r.code != 400 {
			t.Errorf("%s: status %d %s, want 400", c.name, r.code, r.body)
			continue
		}
		m := r.json(t)["error"].(map[string]any)
		found := false
		if fields, ok := m["details"].([]any); ok {
			for _, f := range fields {
				if f.(map[string]any)["field"] == c.field {
					found = true
				}
			}
		}
		if !found || m["code"] != "invalid_input" {
			t.Errorf("%s: body %s does not name field %q", c.name, r.body, c.field)
		}
	}
	if after := e.count(`SELECT count(*) FROM events`); after != before {
		t.Errorf("invalid commands appended %d events", after-before)
	}
	// Several bad fields are reported at once.
	r := e.do("POST", "/v1/products", `{"name":"","price":-1,"stock":1.5,"x":1}`)
	if r.code != 400 || len(r.json(t)["error"].(map[string]any)["details"].([]any)) != 4 {
		t.Errorf("all errors at once: %d %s", r.code, r.body)
	}
	// Boundaries that are valid.
	for _, body := range []string{
		`{"name":"` + long(200) + `","description":"` + long(5000) + `","price":0,"stock":0}`,
		`{"name":"é","price":100000000000,"stock":9007199254740991}`,
		`{"name":"a","price":1.50,"stock":1.0}`,
	} {
		if r := e.do("POST", "/v1/products", body); r.code != 201 {
			t.Errorf("valid boundary %.60s: %d %s", body, r.code, r.body)
		}
	}
}

func TestAuth(t *testing.T) {
	e := newEnv(t, nil)
	body := `{"name":"a","price":1,"stock":1}`
	for _, c := range []struct {
		auth string
		code int
	}{
		{"Authorization: ", 401},
		{"Authorization: Bearer wrong-key-0123456789", 401},
		{"Authorization: Basic " + testKey, 401},
		{"Authorization: Bearer", 401},
		{"Authorization: Bearer " + testKey, 201},
		{"Authorization: bearer " + testKey, 201},
	} {
		r := e.do("POST", "/v1/products", body, c.auth)
		if r.code != c.code {
			t.Errorf("%q: %d %s, want %d", c.auth, r.code, r.body, c.code)
		}
		if c.code == 401 && (r.json(t)["error"].(map[string]any)["code"] != "unauthenticated" || r.hdr.Get("WWW-Authenticate") == "") {
			t.Errorf("%q: body %s headers %v", c.auth, r.body, r.hdr)
		}
	}
	if n := e.count(`SELECT count(*) FROM events`); n != 2 {
		t.Errorf("%d events, want 2 (only the authenticated requests)", n)
	}
	// Health and metrics need no key.
	for _, p := range []string{"/healthz", "/readyz", "/metrics"} {
		if r := e.do("GET", p, "", "Authorization: "); r.code != 200 {
			t.Errorf("%s: %d", p, r.code)
		}
	}
}

func TestBodyLimitAndContentType(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxBodyBytes = 1024 })
	big := `{"name":"a","description":"` + strings.Repeat("x", 2000) + `","price":1,"stock":1}`
	if r := e.do("POST", "/v1/products", big); r.code != 413 || !strings.Contains(r.body, "body_too_large") {
		t.Errorf("declared length: %d %s", r.code, r.body)
	}
	// Chunked (no Content-Length): caught while reading.
	req := httptest.NewRequest("POST", "/v1/products", io.NopCloser(strings.NewReader(big)))
	req.ContentLength = -1
	req.TransferEncoding = []string{"chunked"}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+testKey)
	w := httptest.NewRecorder()
	e.e.ServeHTTP(w, req)
	if w.Code != 413 {
		t.Errorf("chunked: %d %s", w.Code, w.Body)
	}
	for _, ct := range []string{"text/plain", "", "application/x-www-form-urlencoded", "application/jsonx"} {
		r := e.do("POST", "/v1/products", `{"name":"a","price":1,"stock":1}`, "Content-Type: "+ct)
		if r.code != 415 || !strings.Contains(r.body, "unsupported_media_type") {
			t.Errorf("content type %q: %d %s", ct, r.code, r.body)
		}
	}
	if r := e.do("POST", "/v1/products", `{"name":"a","price":1,"stock":1}`, "Content-Type: application/json; charset=utf-8"); r.code != 201 {
		t.Errorf("json with charset: %d %s", r.code, r.body)
	}
	if n := e.count(`SELECT count(*) FROM events`); n != 1 {
		t.Errorf("%d events, want 1", n)
	}
}

func TestSeedEndpoint(t *testing.T) {
	e := newEnv(t, nil)
	r := e.do("POST", "/api/commands/order/create", `{"user_id":"u1","product_id":"p1","quantity":1,"total_price":9.99}`)
	if r.code != 202 {
		t.Fatalf("seed: %d %s", r.code, r.body)
	}
	m := r.json(t)
	if m["version"] != 1.0 {
		t.Fatalf("seed body %s", r.body)
	}
	var typ string
	var payload map[string]any
	if err := e.pg.Pool.QueryRow(context.Background(), `SELECT event_type, payload FROM events WHERE aggregate_type = 'order' AND aggregate_id = $1`,
		m["id"]).Scan(&typ, &payload); err != nil {
		t.Fatal(err)
	}
	if typ != "OrderCreated" || payload["total_price"] != 9.99 || payload["quantity"] != 1.0 {
		t.Fatalf("seed event %s %v", typ, payload)
	}
}

func TestOrderTransitions(t *testing.T) {
	e := newEnv(t, nil)
	id := e.createOrder()
	steps := []struct {
		action string
		code   int
	}{
		{"ship", 422}, {"pay", 200}, {"pay", 422}, {"ship", 200}, {"cancel", 422}, {"ship", 422},
	}
	for _, s := range steps {
		r := e.do("POST", "/v1/orders/"+id+"/"+s.action, "")
		if r.code != s.code {
			t.Fatalf("%s: %d %s, want %d", s.action, r.code, r.body, s.code)
		}
		if s.code == 422 && r.json(t)["error"].(map[string]any)["code"] != "illegal_transition" {
			t.Errorf("%s: %s", s.action, r.body)
		}
	}
	id2 := e.createOrder()
	if r := e.do("POST", "/v1/orders/"+id2+"/cancel", `{"reason":"changed mind"}`, "If-Match: 1"); r.code != 200 || r.json(t)["version"] != 2.0 {
		t.Fatalf("cancel: %d %s", r.code, r.body)
	}
	if r := e.do("POST", "/v1/orders/"+id2+"/pay", `{"payment_reference":"x"}`); r.code != 422 {
		t.Fatalf("pay after cancel: %d %s", r.code, r.body)
	}
	if r := e.do("POST", "/v1/orders/"+id2+"/refund", ""); r.code != 404 {
		t.Fatalf("unknown action: %d %s", r.code, r.body)
	}
	if n := e.count(`SELECT count(*) FROM events WHERE aggregate_type = 'order'`); n != 5 {
		t.Errorf("%d order events, want 5", n)
	}
}

func TestIdempotencyOverHTTP(t *testing.T) {
	e := newEnv(t, nil)
	body := `{"user_id":"u1","product_id":"p1","quantity":1,"total_price":1}`
	first := e.do("POST", "/v1/orders", body, "Idempotency-Key: order-1")
	again := e.do("POST", "/v1/orders", body, "Idempotency-Key: order-1")
	if first.code != 201 || again.code != 201 || first.body != again.body || again.hdr.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("replay: %d %s / %d %s", first.code, first.body, again.code, again.body)
	}
	if r := e.do("POST", "/v1/orders", `{"user_id":"u2","product_id":"p1","quantity":1,"total_price":1}`, "Idempotency-Key: order-1"); r.code != 422 ||
		!strings.Contains(r.body, "idempotency_key_reused") {
		t.Fatalf("same key, other body: %d %s", r.code, r.body)
	}
	// The same key on another route is another request.
	if r := e.do("POST", "/api/commands/order/create", body, "Idempotency-Key: order-1"); r.code != 422 {
		t.Fatalf("same key, other route: %d %s", r.code, r.body)
	}
	id := first.json(t)["id"].(string)
	pay1 := e.do("POST", "/v1/orders/"+id+"/pay", "", "Idempotency-Key: pay-1")
	pay2 := e.do("POST", "/v1/orders/"+id+"/pay", "", "Idempotency-Key: pay-1")
	if pay1.code != 200 || pay2.code != 200 || pay1.body != pay2.body {
		t.Fatalf("pay replay: %d %s / %d %s", pay1.code, pay1.body, pay2.code, pay2.body)
	}
	// A failed command stores nothing under its key: a later retry runs.
	if r := e.do("POST", "/v1/orders/"+id+"/ship", "", "Idempotency-Key: ship-1", "If-Match: 1"); r.code != 409 {
		t.Fatalf("stale ship: %d %s", r.code, r.body)
	}
	if r := e.do("POST", "/v1/orders/"+id+"/ship", "", "Idempotency-Key: ship-1", "If-Match: 1"); r.code != 409 {
		t.Fatalf("stale ship retried: %d %s", r.code, r.body)
	}

	// Concurrent requests with one key: one event, identical answers.
	const n = 16
	var wg sync.WaitGroup
	out := make([]resp, n)
	for i := range n {
		wg.Go(func() { out[i] = e.do("POST", "/v1/orders", body, "Idempotency-Key: concurrent") })
	}
	wg.Wait()
	for i := range n {
		if out[i].code != 201 || out[i].body != out[0].body {
			t.Fatalf("concurrent %d: %d %s vs %s", i, out[i].code, out[i].body, out[0].body)
		}
	}
	if c := e.count(`SELECT count(*) FROM events WHERE event_type = 'OrderCreated'`); c != 2 {
		t.Fatalf("%d OrderCreated events, want 2", c)
	}
}

func TestConcurrentUpdatesOverHTTP(t *testing.T) {
	e := newEnv(t, nil)
	id := e.createProduct()
	const n = 50
	var wg sync.WaitGroup
	codes := make([]int, n)
	bodies := make([]string, n)
	for i := range n {
		wg.Go(func() {
			r := e.do("PUT", "/v1/products/"+id, fmt.Sprintf(`{"name":"w%d","price":1,"stock":%d}`, i, i), "If-Match: 1")
			codes[i], bodies[i] = r.code, r.body
		})
	}
	wg.Wait()
	ok, conflict := 0, 0
	for i, c := range codes {
		switch c {
		case 200:
			ok++
		case 409:
			conflict++
			if !strings.Contains(bodies[i], `"current_version":2`) {
				t.Errorf("409 body %s", bodies[i])
			}
		default:
			t.Errorf("status %d %s", c, bodies[i])
		}
	}
	if ok != 1 || conflict != n-1 {
		t.Fatalf("%d ok, %d conflicts", ok, conflict)
	}
	if v := testutil.ToFloat64(e.mustCounter("cqrsflow_command_conflicts_total", "product")); v != n-1 {
		t.Errorf("conflict metric %v", v)
	}
}

func TestRateLimit(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.RateLimitRPS = 0.5; c.RateLimitBurst = 2 })
	body := `{"name":"a","price":1,"stock":1}`
	codes := []int{e.do("POST", "/v1/products", body).code, e.do("POST", "/v1/products", body).code}
	r := e.do("POST", "/v1/products", body)
	if codes[0] != 201 || codes[1] != 201 || r.code != 429 || r.hdr.Get("Retry-After") == "" {
		t.Fatalf("codes %v then %d %s (Retry-After %q)", codes, r.code, r.body, r.hdr.Get("Retry-After"))
	}
}

func TestPostgresDown(t *testing.T) {
	pool, err := pgxpool.New(context.Background(), "postgres://x:y@127.0.0.1:1/db?connect_timeout=1")
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	e := newEnvWithPool(t, nil, pool, nil)
	start := time.Now()
	r := e.do("POST", "/v1/products", `{"name":"a","price":1,"stock":1}`)
	if r.code != 503 || r.hdr.Get("Retry-After") == "" || !strings.Contains(r.body, "unavailable") {
		t.Fatalf("write with PostgreSQL down: %d %s", r.code, r.body)
	}
	if r := e.do("GET", "/readyz", ""); r.code != 503 {
		t.Fatalf("readyz with PostgreSQL down: %d %s", r.code, r.body)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v", d)
	}
}

func TestPostgresOutageAnswers503AndRecovers(t *testing.T) {
	pg := testenv.Postgres(t)
	u, err := url.Parse(pg.URL)
	if err != nil {
		t.Fatal(err)
	}
	proxy := testenv.NewProxy(t, u.Host)
	u.Host = proxy.Addr()
	q := u.Query()
	q.Set("connect_timeout", "1")
	u.RawQuery = q.Encode()
	pool, err := pgxpool.New(context.Background(), u.String())
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	e := newEnvWithPool(t, pg, pool, nil)
	body := `{"name":"a","price":1,"stock":1}`
	if r := e.do("POST", "/v1/products", body); r.code != 201 {
		t.Fatalf("before outage: %d %s", r.code, r.body)
	}
	proxy.Cut()
	start := time.Now()
	for i := range 3 {
		if r := e.do("POST", "/v1/products", body); r.code != 503 {
			t.Fatalf("during outage (%d): %d %s", i, r.code, r.body)
		}
	}
	if r := e.do("GET", "/readyz", ""); r.code != 503 {
		t.Fatalf("readyz during outage: %d", r.code)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("503s took %v", d)
	}
	proxy.Restore()
	deadline := time.Now().Add(10 * time.Second)
	for {
		r := e.do("POST", "/v1/products", body)
		if r.code == 201 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not recovered: %d %s", r.code, r.body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if r := e.do("GET", "/readyz", ""); r.code != 200 {
		t.Fatalf("readyz after outage: %d %s", r.code, r.body)
	}
	if n := e.count(`SELECT count(*) FROM events`); n != 2 {
		t.Errorf("%d events, want 2", n)
	}
}
