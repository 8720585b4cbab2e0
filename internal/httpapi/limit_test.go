package httpapi

import (
	"fmt"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"

	"cqrsflow/internal/eventschema"
)

func (f *authzFixture) from(addr, method, path, credential string, hdr ...string) int {
	req := httptest.NewRequest(method, path, nil)
	req.RemoteAddr = addr
	if credential != "" {
		req.Header.Set("Authorization", "Bearer "+credential)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	f.e.ServeHTTP(w, req)
	if w.Code == 429 {
		if s, err := strconv.Atoi(w.Header().Get("Retry-After")); err != nil || s < 1 {
			panic(fmt.Sprintf("429 without Retry-After: %v", w.Header()))
		}
	}
	return w.Code
}

// Requests without a valid credential are throttled per client address
// before authentication; authenticated ones are not charged. Without
// trusted proxies X-Forwarded-For changes nothing.
func TestClientLimitBeforeAuth(t *testing.T) {
	f := authzEngine(t, func(c *Config) { c.ClientRateLimitRPS = 0.001; c.ClientRateLimitBurst = 5 })
	const a, b = "192.0.2.1:1234", "192.0.2.2:1234"
	for i := range 20 {
		if code := f.from(a, "GET", "/v1/orders/"+someID, "rwkey-0123456789abcdef"); code != 200 {
			t.Fatalf("authenticated request %d: %d", i, code)
		}
	}
	for i := range 5 {
		if code := f.from(a, "GET", "/v1/orders/"+someID, "wrong-key-0123456789ab"); code != 401 {
			t.Fatalf("wrong key %d: %d", i, code)
		}
	}
	if code := f.from(a, "GET", "/v1/orders/"+someID, "wrong-key-0123456789ab"); code != 429 {
		t.Errorf("sixth wrong key: %d, want 429", code)
	}
	// The address as a whole is throttled now, spoofed X-Forwarded-For or not.
	if code := f.from(a, "GET", "/v1/orders/"+someID, "rwkey-0123456789abcdef", "X-Forwarded-For", "198.51.100.9"); code != 429 {
		t.Errorf("valid key from a throttled address: %d, want 429", code)
	}
	if code := f.from(a, "GET", "/healthz", "", "X-Forwarded-For", "198.51.100.9"); code != 429 {
		t.Errorf("health from a throttled address: %d, want 429", code)
	}
	// Another address is unaffected.
	if code := f.from(b, "GET", "/healthz", ""); code != 200 {
		t.Errorf("other address: %d", code)
	}
	// IPv6 clients count per /64.
	for i := range 5 {
		f.from(fmt.Sprintf("[2001:db8:1:2::%x]:443", i+1), "GET", "/healthz", "")
	}
	if code := f.from("[2001:db8:1:2::ff]:443", "GET", "/healthz", ""); code != 429 {
		t.Errorf("sixth address of one /64: %d, want 429", code)
	}
}

func TestTrustedProxies(t *testing.T) {
	f := authzEngine(t, func(c *Config) {
		c.ClientRateLimitRPS = 0.001
		c.ClientRateLimitBurst = 1
		c.TrustedProxies = []string{"10.0.0.0/8"}
	})
	proxy := "10.1.2.3:5555"
	if code := f.from(proxy, "GET", "/healthz", "", "X-Forwarded-For", "198.51.100.1"); code != 200 {
		t.Fatalf("first client behind the proxy: %d", code)
	}
	if code := f.from(proxy, "GET", "/healthz", "", "X-Forwarded-For", "198.51.100.2"); code != 200 {
		t.Errorf("second client behind the proxy: %d (counted as the proxy?)", code)
	}
	if code := f.from(proxy, "GET", "/healthz", "", "X-Forwarded-For", "198.51.100.1"); code != 429 {
		t.Errorf("first client again: %d, want 429", code)
	}
	// An untrusted peer's X-Forwarded-For is ignored.
	if code := f.from("192.0.2.7:1", "GET", "/healthz", "", "X-Forwarded-For", "198.51.100.3"); code != 200 {
		t.Errorf("untrusted peer: %d", code)
	}
	if code := f.from("192.0.2.7:1", "GET", "/healthz", "", "X-Forwarded-For", "198.51.100.4"); code != 429 {
		t.Errorf("untrusted peer with another X-Forwarded-For: %d, want 429", code)
	}
	schemas, err := eventschema.Load()
	if err != nil {
		t.Fatal(err)
	}
	_, err = NewEngine(Config{MaxBodyBytes: 1, TrustedProxies: []string{"not-a-cidr"}}, Deps{Store: foldingStore(),
		Schemas: schemas, Auth: unitAuth(t, "unit:"+unitKey), Registerer: prometheus.NewRegistry()})
	if err == nil || !strings.Contains(err.Error(), "not-a-cidr") {
		t.Errorf("invalid trusted proxy: %v", err)
	}
}

func TestBucketsAreBounded(t *testing.T) {
	b := newBuckets(1, 1, 3)
	first := b.get("a")
	first.Allow()
	for _, k := range []string{"b", "c", "a", "d"} { // "a" used again, so "b" is the oldest
		b.get(k)
	}
	if n := b.len(); n != 3 {
		t.Fatalf("%d buckets, want 3", n)
	}
	if b.get("a") != first {
		t.Error("recently used bucket evicted")
	}
	if _, ok := b.byKey["b"]; ok {
		t.Error("least recently used bucket kept")
	}
}

func TestPrincipalRateLimitCoversTokens(t *testing.T) {
	f := authzEngine(t, func(c *Config) { c.RateLimitRPS = 0.001; c.RateLimitBurst = 2 })
	tok := f.issuer.Token(t, "u", "read")
	for i, want := range []int{200, 200, 429} {
		if code := f.from("192.0.2.1:1", "GET", "/v1/orders/"+someID, tok); code != want {
			t.Errorf("token request %d: %d, want %d", i, code, want)
		}
	}
	// Another user of the same identity provider has its own bucket.
	if code := f.from("192.0.2.1:1", "GET", "/v1/orders/"+someID, f.issuer.Token(t, "v", "read")); code != 200 {
		t.Errorf("other user: %d", code)
	}
}

func TestClientWaits(t *testing.T) {
	w := NewClientWaits(2)
	ctx := func(addr string) *gin.Context {
		c, _ := gin.CreateTestContext(httptest.NewRecorder())
		c.Request = httptest.NewRequest("GET", "/", nil)
		c.Request.RemoteAddr = addr
		return c
	}
	a := ctx("192.0.2.1:1")
	l1, ok1 := w.Enter(a)
	l2, ok2 := w.Enter(a)
	if _, ok3 := w.Enter(a); !ok1 || !ok2 || ok3 {
		t.Fatalf("slots: %v %v %v, want true true false", ok1, ok2, ok3)
	}
	if _, ok := w.Enter(ctx("192.0.2.2:1")); !ok {
		t.Error("another address refused")
	}
	l1()
	l1() // a second call gives back nothing more
	if _, ok := w.Enter(a); !ok {
		t.Error("freed slot refused")
	}
	if _, ok := w.Enter(a); ok {
		t.Error("double leave freed two slots")
	}
	l2()
	if n := len(w.n); n != 2 {
		t.Errorf("%d addresses tracked, want 2", n)
	}
}
