//go:build integration

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/elastic/go-elasticsearch/v8"
	"github.com/golang-jwt/jwt/v5"

	"cqrsflow/internal/auth/authtest"
	"cqrsflow/internal/esindex"
	"cqrsflow/internal/projection/orders"
	"cqrsflow/internal/projection/products"
	"cqrsflow/internal/projector"
	"cqrsflow/internal/testenv"
)

// The hostile-client suite: the real api (run in-process with its flags)
// on real PostgreSQL and Elasticsearch — the latter behind a TCP proxy
// the test can cut — called the way an attacker would. Every case states
// the exact status, and no request may get a 5xx unless the case is an
// outage.

const (
	svcKey   = "svc-key-0123456789abcdef"   // read,write (the default), any user
	roKey    = "ro-key-0123456789abcdef"    // read
	woKey    = "wo-key-0123456789abcdef"    // write
	aliceKey = "alice-key-0123456789abcdef" // read,write for user alice only
	opsKey   = "ops-key-0123456789abcdef"   // admin
	apiKeys  = "svc:" + svcKey + ",ro:" + roKey + ":read,wo:" + woKey + ":write,alice:" + aliceKey +
		":read,write:user=alice,ops:" + opsKey + ":admin"
)

type hostile struct {
	t      *testing.T
	base   string
	es     *elasticsearch.Client
	prefix string
	proxy  *testenv.Proxy
	pgURL  string
	esAddr string
	iss    *authtest.Issuer
	client *http.Client
}

func newHostile(t *testing.T) *hostile {
	t.Helper()
	pg := testenv.Postgres(t)
	es := testenv.Elasticsearch(t)
	prefix := testenv.IndexPrefix(t) + "-"
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, p := range []projector.Projection{products.Projection, orders.Projection} {
		if _, err := projector.EnsureReadModel(ctx, es, prefix, p); err != nil {
			t.Fatal(err)
		}
	}
	u, err := url.Parse(testenv.ElasticsearchURL())
	if err != nil {
		t.Fatal(err)
	}
	proxy := testenv.NewProxy(t, u.Host)
	h := &hostile{t: t, es: es, prefix: prefix, proxy: proxy, pgURL: pg.URL, esAddr: "http://" + proxy.Addr(),
		iss: authtest.NewIssuer(t), client: &http.Client{Timeout: 30 * time.Second}}
	h.base = h.start(t, "-client-rate-limit-rps", "100000", "-client-rate-limit-burst", "100000")
	return h
}

// start runs an api with the suite's keys, identity provider, database
// and Elasticsearch proxy, plus args; it stops when the test ends.
func (h *hostile) start(t *testing.T, args ...string) string {
	t.Helper()
	addr := testenv.FreeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, append([]string{"-postgres-url", h.pgURL, "-elasticsearch-url", h.esAddr, "-index-prefix", h.prefix,
			"-http-addr", addr, "-api-keys", apiKeys, "-api-keys-file", "", "-migrate-on-start=false", "-log-level", "error",
			"-oidc-issuer", h.iss.Issuer, "-oidc-audience", h.iss.Audience, "-oidc-jwks-url", h.iss.JWKSServer(t)}, args...))
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("api: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Error("api did not stop")
		}
	})
	base := "http://" + addr
	deadline := time.Now().Add(20 * time.Second)
	for {
		res, err := http.Get(base + "/healthz")
		if err == nil {
			res.Body.Close()
			return base
		}
		select {
		case err := <-done:
			t.Fatalf("api exited: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("api did not start: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

type answer struct {
	code int
	body string
	hdr  http.Header
}

// field is the field an error body names (write errors list fields,
// read errors name one).
func (a answer) field() string {
	var b struct {
		Error struct {
			Details json.RawMessage `json:"details"`
		} `json:"error"`
	}
	_ = json.Unmarshal([]byte(a.body), &b)
	var one struct {
		Field string `json:"field"`
	}
	if json.Unmarshal(b.Error.Details, &one) == nil && one.Field != "" {
		return one.Field
	}
	var many []struct {
		Field string `json:"field"`
	}
	_ = json.Unmarshal(b.Error.Details, &many)
	names := make([]string, len(many))
	for i, f := range many {
		names[i] = f.Field
	}
	return strings.Join(names, ",")
}

func (a answer) errorCode() string {
	var b struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	_ = json.Unmarshal([]byte(a.body), &b)
	return b.Error.Code
}

// call sends a request to base; credential "" sends none; hdr are
// name, value pairs. A 5xx fails the test.
func (h *hostile) call(base, method, path, body, credential string, hdr ...string) answer {
	h.t.Helper()
	a := h.send(base, method, path, body, credential, hdr...)
	if a.code >= 500 {
		h.t.Errorf("%s %.120s: %d %s (a 5xx)", method, path, a.code, a.body)
	}
	return a
}

func (h *hostile) send(base, method, path, body, credential string, hdr ...string) answer {
	h.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, base+path, rd)
	if err != nil {
		h.t.Fatalf("%s %.120s: %v", method, path, err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if credential != "" {
		req.Header.Set("Authorization", "Bearer "+credential)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := h.client.Do(req)
	if err != nil {
		h.t.Fatalf("%s %.120s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return answer{res.StatusCode, string(b), res.Header}
}

func (h *hostile) do(method, path, body, credential string, hdr ...string) answer {
	h.t.Helper()
	return h.call(h.base, method, path, body, credential, hdr...)
}

func (h *hostile) expect(a answer, want int, what string) {
	h.t.Helper()
	if a.code != want {
		h.t.Errorf("%s: %d %.300s, want %d", what, a.code, a.body, want)
		return
	}
	if want >= 400 && a.errorCode() == "" {
		h.t.Errorf("%s: %d without a JSON error body: %.200s", what, a.code, a.body)
	}
}

func (h *hostile) created(a answer, what string) string {
	h.t.Helper()
	var b struct {
		ID string `json:"id"`
	}
	if a.code != 201 || json.Unmarshal([]byte(a.body), &b) != nil {
		h.t.Fatalf("%s: %d %s", what, a.code, a.body)
	}
	return b.ID
}

// project writes an order into the read model as the projector would.
func (h *hostile) project(id, user string) {
	h.t.Helper()
	d := orders.Doc{UserID: user, ProductID: "p", Quantity: 1, TotalPrice: 1, Status: "created"}
	d.ID, d.Version, d.CreatedAt, d.UpdatedAt, d.RecordedAt, d.LastEventID = id, 1, time.Now(), time.Now(), time.Now(), "e"
	b, _ := json.Marshal(d)
	res, err := esindex.Bulk(context.Background(), h.es, []esindex.Op{{Index: h.prefix + "orders", ID: id, Version: 1, Doc: b}}, "true")
	if err != nil || res[0].Err != "" {
		h.t.Fatalf("indexing order %s: %v %+v", id, err, res)
	}
}

type route struct {
	method, path, body string
	scope              string // read or write
}

// routes are every /v1 route (and the seed route) with a well-formed
// request; {id} is replaced.
func routes(product, order string) []route {
	p := `{"name":"Lamp","price":1,"stock":1}`
	o := `{"user_id":"alice","product_id":"` + product + `","quantity":1,"total_price":1}`
	return []route{
		{"GET", "/v1/products/" + product, "", "read"},
		{"GET", "/v1/products?limit=5", "", "read"},
		{"GET", "/v1/products/search?q=lamp", "", "read"},
		{"GET", "/v1/orders/" + order, "", "read"},
		{"GET", "/v1/orders?user_id=alice", "", "read"},
		{"POST", "/v1/products", p, "write"},
		{"PUT", "/v1/products/" + product, p, "write"},
		{"DELETE", "/v1/products/" + product, "", "write"},
		{"POST", "/v1/orders", o, "write"},
		{"POST", "/v1/orders/" + order + "/pay", "", "write"},
		{"POST", "/v1/orders/" + order + "/ship", "", "write"},
		{"POST", "/v1/orders/" + order + "/cancel", "", "write"},
		{"POST", "/api/commands/order/create", o, "write"},
	}
}

func TestHostileClients(t *testing.T) {
	h := newHostile(t)
	product := h.created(h.do("POST", "/v1/products", `{"name":"Lamp","price":1,"stock":1}`, svcKey), "create product")
	aliceOrder := h.created(h.do("POST", "/v1/orders", `{"user_id":"alice","product_id":"p","quantity":1,"total_price":1}`, aliceKey), "alice's order")
	bobOrder := h.created(h.do("POST", "/v1/orders", `{"user_id":"bob","product_id":"p","quantity":1,"total_price":1}`, svcKey), "bob's order")
	h.project(aliceOrder, "alice")
	h.project(bobOrder, "bob")

	t.Run("anonymous and wrong credentials", func(t *testing.T) {
		h := *h
		h.t = t
		expired := h.iss.Token(t, "alice", "read write", authtest.Expired)
		none := jwt.NewWithClaims(jwt.SigningMethodNone, jwt.MapClaims{"iss": h.iss.Issuer, "aud": h.iss.Audience, "sub": "alice",
			"exp": time.Now().Add(time.Hour).Unix(), "scope": "admin"})
		noneTok, _ := none.SignedString(jwt.UnsafeAllowNoneSignatureType)
		for _, r := range routes(product, bobOrder) {
			for name, cred := range map[string]string{"anonymous": "", "wrong key": "wrong-key-0123456789abcdef",
				"expired token": expired, "alg none": noneTok} {
				a := h.do(r.method, r.path, r.body, cred)
				h.expect(a, 401, name+" "+r.method+" "+r.path)
				if !strings.HasPrefix(a.hdr.Get("WWW-Authenticate"), "Bearer ") || a.errorCode() != "unauthenticated" {
					t.Errorf("%s %s %s: %v %s", name, r.method, r.path, a.hdr, a.body)
				}
			}
		}
	})

	t.Run("wrong scope", func(t *testing.T) {
		h := *h
		h.t = t
		for _, r := range routes(product, bobOrder) {
			cred, other := woKey, h.iss.Token(t, "alice", "write")
			if r.scope == "write" {
				cred, other = roKey, h.iss.Token(t, "alice", "read")
			}
			for _, c := range []string{cred, other} {
				a := h.do(r.method, r.path, r.body, c)
				h.expect(a, 403, "wrong scope "+r.method+" "+r.path)
				if !strings.Contains(a.hdr.Get("WWW-Authenticate"), `error="insufficient_scope"`) {
					t.Errorf("%s %s: WWW-Authenticate %q", r.method, r.path, a.hdr.Get("WWW-Authenticate"))
				}
			}
		}
		// A principal bound to a user never writes the catalogue.
		for _, c := range []string{aliceKey, h.iss.Token(t, "alice", "read write")} {
			h.expect(h.do("POST", "/v1/products", `{"name":"x","price":1,"stock":1}`, c), 403, "bound principal creates a product")
			h.expect(h.do("PUT", "/v1/products/"+product, `{"name":"x","price":1,"stock":1}`, c), 403, "bound principal updates a product")
			h.expect(h.do("DELETE", "/v1/products/"+product, "", c), 403, "bound principal deletes a product")
		}
	})

	t.Run("cross-user orders", func(t *testing.T) {
		h := *h
		h.t = t
		mallory := h.iss.Token(t, "mallory", "read write")
		for name, cred := range map[string]string{"alice's key": aliceKey, "alice's token": h.iss.Token(t, "alice", "read write")} {
			h.expect(h.do("GET", "/v1/orders/"+aliceOrder, "", cred), 200, name+" reads her order")
			h.expect(h.do("GET", "/v1/orders/"+bobOrder, "", cred), 404, name+" reads bob's order")
			h.expect(h.do("GET", "/v1/orders/"+bobOrder+"?min_version=1&wait=200ms", "", cred), 404, name+" waits for bob's order")
			h.expect(h.do("GET", "/v1/orders?user_id=bob", "", cred), 403, name+" lists bob's orders")
			h.expect(h.do("POST", "/v1/orders", `{"user_id":"bob","product_id":"p","quantity":1,"total_price":1}`, cred), 403, name+" orders for bob")
			for _, action := range []string{"pay", "ship", "cancel"} {
				h.expect(h.do("POST", "/v1/orders/"+bobOrder+"/"+action, "", cred), 404, name+" "+action+"s bob's order")
				h.expect(h.do("POST", "/v1/orders/"+bobOrder+"/"+action, `{"expected_version":1}`, cred), 404,
					name+" "+action+"s bob's order at its version")
			}
			var list struct {
				Items []struct {
					UserID string `json:"user_id"`
				} `json:"items"`
			}
			a := h.do("GET", "/v1/orders", "", cred)
			if h.expect(a, 200, name+" lists her orders"); json.Unmarshal([]byte(a.body), &list) != nil || len(list.Items) != 1 || list.Items[0].UserID != "alice" {
				t.Errorf("%s lists %s", name, a.body)
			}
		}
		h.expect(h.do("GET", "/v1/orders/"+aliceOrder, "", mallory), 404, "mallory reads alice's order")
		h.expect(h.do("GET", "/v1/orders/"+bobOrder, "", opsKey), 200, "admin reads bob's order")
		h.expect(h.do("GET", "/v1/orders", "", opsKey), 200, "admin lists every order")
		h.expect(h.do("GET", "/v1/orders", "", svcKey), 400, "a service key must name user_id")
		// None of that changed bob's order: it is still created, so payable.
		h.expect(h.do("POST", "/v1/orders/"+bobOrder+"/pay", "", svcKey), 200, "bob's order is still payable")
	})

	t.Run("encoded ids", func(t *testing.T) {
		h := *h
		h.t = t
		for _, bad := range []string{"x%3Frefresh=true", "x%25zz", "a%2Fb", strings.Repeat("a", 10000), "%00", "x%00y"} {
			for _, r := range routes(bad, bad) {
				if !strings.Contains(r.path, bad) {
					continue
				}
				a := h.do(r.method, r.path, r.body, opsKey)
				h.expect(a, 400, fmt.Sprintf("%s %.60s", r.method, r.path))
				if a.field() != "id" || strings.Contains(a.body, "refresh") || len(a.body) > 1000 {
					t.Errorf("%s %.60s: %.300s, want 400 naming id alone, no echo", r.method, r.path, a.body)
				}
			}
		}
		// An empty id is no route.
		h.expect(h.do("GET", "/v1/products/", "", opsKey), 404, "empty id")
	})

	t.Run("malformed parameters and headers", func(t *testing.T) {
		h := *h
		h.t = t
		for _, c := range []struct{ path, field string }{
			{"/v1/products?page=abc", "page"},
			{"/v1/products?limit=0", "limit"},
			{"/v1/products/search?q=%FF", "q"},
			{"/v1/products/search?q=" + strings.Repeat("q", 501), "q"},
			{"/v1/products/search?q=a&min_price=NaN", "min_price"},
			{"/v1/products/" + product + "?min_version=x", "min_version"},
			{"/v1/products/" + product + "?min_version=1&wait=11s", "wait"},
			{"/v1/orders?user_id=" + strings.Repeat("u", 101), "user_id"},
			{"/v1/orders?user_id=a%00b", "user_id"},
			{"/v1/orders?user_id=alice&status=lost", "status"},
		} {
			a := h.do("GET", c.path, "", opsKey)
			if h.expect(a, 400, c.path); a.field() != c.field {
				t.Errorf("%.80s: names %q, want %q", c.path, a.field(), c.field)
			}
		}
		for _, c := range []struct{ name, value, field string }{
			{"Idempotency-Key", strings.Repeat("k", 300), "Idempotency-Key"},
			{"Idempotency-Key", "a b", "Idempotency-Key"},
			{"X-Correlation-ID", "bad id", "X-Correlation-ID"},
			{"If-Match", "yesterday", "If-Match"},
		} {
			a := h.do("PUT", "/v1/products/"+product, `{"name":"x","price":1,"stock":1}`, svcKey, c.name, c.value)
			if h.expect(a, 400, c.name); !strings.Contains(a.field(), c.field) {
				t.Errorf("%s: names %q", c.name, a.field())
			}
		}
		h.expect(h.do("POST", "/v1/products", `{"name":"x","price":1,"stock":1}`, svcKey, "Content-Type", "text/plain"), 415, "content type")
		h.expect(h.do("GET", "/v1/products/"+product, "", svcKey+strings.Repeat("k", 9000)), 401, "an 9 KiB Authorization")
		// Headers past HTTP_MAX_HEADER_BYTES: refused by the server itself.
		if a := h.send(h.base, "GET", "/healthz", "", "", "X-Big", strings.Repeat("b", 100<<10)); a.code != 431 {
			t.Errorf("100 KiB of headers: %d", a.code)
		}
	})

	t.Run("random methods against /metrics", func(t *testing.T) {
		h := *h
		h.t = t
		rng := rand.New(rand.NewPCG(7, 7))
		for i := range 500 {
			h.expect(h.do(fmt.Sprintf("M%dX%d", i, rng.IntN(1e9)), "/metrics", "", ""), 405, "made-up method")
		}
		a := h.do("GET", "/metrics", "", "")
		methods := map[string]bool{}
		for _, line := range strings.Split(a.body, "\n") {
			if !strings.HasPrefix(line, "cqrsflow_http_request_duration_seconds_count{") {
				continue
			}
			i := strings.Index(line, `method="`)
			m := line[i+8:]
			methods[m[:strings.Index(m, `"`)]] = true
			if strings.Contains(line, `code="5xx"`) {
				t.Errorf("a 5xx was answered: %s", line)
			}
		}
		for m := range methods {
			switch m {
			case "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "other":
			default:
				t.Errorf("method label %q on /metrics", m)
			}
		}
		if !methods["other"] || len(methods) > 8 {
			t.Errorf("method labels %v", methods)
		}
	})

	t.Run("slow client is cut", func(t *testing.T) {
		conn, err := net.Dial("tcp", strings.TrimPrefix(h.base, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		fmt.Fprintf(conn, "GET /healthz HTTP/1.1\r\nHost: x\r\n") // headers never finished
		_ = conn.SetReadDeadline(time.Now().Add(15 * time.Second))
		start := time.Now()
		_, err = io.ReadAll(conn) // until the server closes it
		if err != nil || time.Since(start) > 10*time.Second {
			t.Errorf("incomplete headers: %v after %s, want the connection closed within the header timeout", err, time.Since(start))
		}
	})

	t.Run("readyz with Elasticsearch stopped", func(t *testing.T) {
		h := *h
		h.t = t
		h.expect(h.do("GET", "/readyz", "", ""), 200, "ready")
		h.proxy.Cut()
		deadline := time.Now().Add(10 * time.Second)
		var a answer
		for {
			a = h.send(h.base, "GET", "/readyz", "", "")
			if a.code != 200 || time.Now().After(deadline) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if a.code != 503 || a.body != `{"status":"unready","checks":{"elasticsearch":"down","postgres":"up"}}`+"\n" {
			t.Errorf("readyz: %d %q", a.code, a.body)
		}
		esHost := strings.TrimPrefix(h.esAddr, "http://")
		for _, leak := range []string{esHost, "127.0.0.1", "connect", "refused", "cqrsflow"} {
			if strings.Contains(a.body, leak) {
				t.Errorf("readyz reveals %q: %s", leak, a.body)
			}
		}
		// Reads say what is down, as a 503, not a 500.
		if r := h.send(h.base, "GET", "/v1/products/"+product, "", svcKey); r.code != 503 || r.errorCode() != "dependency_unavailable" {
			t.Errorf("read with Elasticsearch down: %d %s", r.code, r.body)
		}
		h.proxy.Restore()
		deadline = time.Now().Add(10 * time.Second)
		for h.send(h.base, "GET", "/readyz", "", "").code != 200 {
			if time.Now().After(deadline) {
				t.Fatal("not ready again after Elasticsearch came back")
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
}

// A second api with small limits: requests without a credential are
// throttled per address before authentication, whatever X-Forwarded-For
// says, and read-your-writes waits are bounded per address.
func TestHostileClientsLimits(t *testing.T) {
	h := newHostile(t)
	base := h.start(t, "-client-rate-limit-rps", "1", "-client-rate-limit-burst", "10", "-max-waits-per-client", "2")
	product := h.created(h.call(base, "POST", "/v1/products", `{"name":"Lamp","price":1,"stock":1}`, svcKey), "create product")

	// Waits: two at once per address, the third refused at once. The
	// read model never reaches version 99, so each waits its 2 s.
	var wg sync.WaitGroup
	got := make([]answer, 3)
	for i := range 3 {
		wg.Go(func() {
			time.Sleep(time.Duration(i) * 300 * time.Millisecond)
			got[i] = h.send(base, "GET", "/v1/products/"+product+"?min_version=99&wait=2s", "", svcKey)
		})
	}
	wg.Wait()
	if got[0].code != 404 || got[1].code != 404 || got[2].code != 429 || got[2].errorCode() != "too_many_waits" {
		t.Errorf("three waits from one address: %d %d %d %s", got[0].code, got[1].code, got[2].code, got[2].body)
	}
	if got[0].hdr.Get("X-Read-Model-Stale") != "true" {
		t.Errorf("a finished wait: %v", got[0].hdr)
	}

	for i := range 10 {
		h.expect(h.call(base, "GET", "/v1/products/"+product, "", fmt.Sprintf("guess-%d-0123456789abcdef", i),
			"X-Forwarded-For", fmt.Sprintf("198.51.100.%d", i)), 401, "guessing a key")
	}
	a := h.call(base, "GET", "/v1/products/"+product, "", "guess-x-0123456789abcdef", "X-Forwarded-For", "198.51.100.99")
	if h.expect(a, 429, "eleventh guess"); a.hdr.Get("Retry-After") == "" || a.errorCode() != "rate_limited" {
		t.Errorf("429 %v %s", a.hdr, a.body)
	}
	h.expect(h.call(base, "GET", "/readyz", "", ""), 429, "anonymous readyz from the same address")
}

// The three binaries, built and run as an operator would, never print a
// secret given to them — in -h, flag errors, validation errors, the
// start-up log or the error of a failed start — whether the connection
// strings are URLs or key=value strings.
func TestBinariesShowNoSecrets(t *testing.T) {
	bin := t.TempDir()
	build := exec.Command("go", "build", "-o", bin+"/", "cqrsflow/api", "cqrsflow/outbox-relay", "cqrsflow/projector")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	secrets := []string{"supersecretkey", "pgSecret", "qpSecret", "kvSecret", "esSecret", "jwksSecret"}
	urlEnv := []string{
		"POSTGRES_URL=postgres://u:pgSecret1@127.0.0.1:1/db?sslmode=disable&password=qpSecret1&connect_timeout=1",
	}
	kvEnv := []string{"POSTGRES_URL=host=127.0.0.1 port=1 user=u password=kvSecret1 dbname=d connect_timeout=1"}
	badEnv := []string{"POSTGRES_URL=postgres://u:pgSecret1@127.0.0.1:1:x/db?password=qpSecret1"}
	common := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "CQRSFLOW_STATE_DIR=" + t.TempDir(),
		"API_KEYS=ops:supersecretkey-123456", "ELASTICSEARCH_URL=http://elastic:esSecret1@127.0.0.1:1",
		"KAFKA_BROKERS=127.0.0.1:1", "OIDC_ISSUER=https://id.example", "OIDC_AUDIENCE=api",
		"OIDC_JWKS_URL=https://u:jwksSecret1@127.0.0.1:1/jwks", "HTTP_ADDR=127.0.0.1:0", "METRICS_ADDR=127.0.0.1:0"}
	type run struct {
		args []string
		env  []string
		code int // -1: any non-zero; -2: any (a retrying start stopped by SIGTERM exits 0)
	}
	runs := map[string][]run{
		"api": {
			{[]string{"-h"}, urlEnv, 0}, {[]string{"serve", "-h"}, kvEnv, 0}, {[]string{"migrate", "-h"}, urlEnv, 0},
			{[]string{"-bad-flag"}, urlEnv, 2}, {[]string{"-max-body-bytes", "x"}, kvEnv, 2},
			{[]string{"-log-level", "loud"}, urlEnv, 2}, {[]string{"-api-keys", "ops:supersecretkey-123456:root"}, urlEnv, 2},
			{nil, urlEnv, 1}, {nil, kvEnv, 1}, {nil, badEnv, 1}, {[]string{"migrate"}, badEnv, 1},
		},
		"outbox-relay": {
			{[]string{"-h"}, urlEnv, 0}, {[]string{"run", "-h"}, kvEnv, 0}, {[]string{"-bad-flag"}, urlEnv, 2},
			{[]string{"-batch-size", "x"}, kvEnv, 2}, {nil, badEnv, -1}, {nil, kvEnv, -2},
		},
		"projector": {
			{[]string{"-h"}, urlEnv, 0}, {[]string{"run", "-h"}, urlEnv, 0}, {[]string{"replay", "-h"}, urlEnv, 0},
			{[]string{"-bad-flag"}, urlEnv, 2}, {[]string{"-batch-max-records", "x"}, urlEnv, 2}, {nil, urlEnv, -2},
		},
	}
	for name, rs := range runs {
		for _, r := range rs {
			// A start that retries is asked to stop (SIGTERM) after a few
			// seconds: what it logged until then is checked too.
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			cmd := exec.CommandContext(ctx, filepath.Join(bin, name), r.args...)
			cmd.Env = append(append([]string{}, common...), r.env...)
			cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
			cmd.WaitDelay = 20 * time.Second
			out, _ := cmd.CombinedOutput()
			cancel()
			code := cmd.ProcessState.ExitCode()
			what := fmt.Sprintf("%s %v (%s)", name, r.args, strings.SplitN(r.env[0], "=", 2)[1][:8])
			if (r.code >= 0 && code != r.code) || (r.code == -1 && code == 0) {
				t.Errorf("%s: exit %d, want %d\n%s", what, code, r.code, out)
			}
			for _, s := range secrets {
				if strings.Contains(string(out), s) {
					t.Errorf("%s reveals %q:\n%s", what, s, out)
				}
			}
		}
	}
}
