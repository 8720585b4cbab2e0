package obs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func readyz(t *testing.T, h *Health) (int, string, Readiness) {
	t.Helper()
	w := httptest.NewRecorder()
	h.ReadyzHandler().ServeHTTP(w, httptest.NewRequest("GET", "/readyz", nil))
	var r Readiness
	if err := json.Unmarshal(w.Body.Bytes(), &r); err != nil {
		t.Fatalf("body %q: %v", w.Body, err)
	}
	return w.Code, w.Body.String(), r
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// /readyz says up or down per check, never the error text, which goes to
// the log instead.
func TestReadyzBodyHidesErrorText(t *testing.T) {
	secretErr := errors.New(`failed to connect to host=10.1.2.3 user=cqrsflow database=prod: password authentication failed`)
	var pgDown atomic.Bool
	pgDown.Store(true)
	var logs syncBuffer
	h := NewHealth(map[string]CheckFunc{
		"postgres": func(context.Context) error {
			if pgDown.Load() {
				return secretErr
			}
			return nil
		},
		"elasticsearch": func(context.Context) error { return nil },
	}).CacheFor(0).WithLog(slog.New(slog.NewJSONHandler(&logs, nil)))

	code, body, r := readyz(t, h)
	if code != 503 || r.Status != "unready" || r.Checks["postgres"] != "down" || r.Checks["elasticsearch"] != "up" || r.Draining {
		t.Fatalf("PostgreSQL down: %d %s", code, body)
	}
	if body != `{"status":"unready","checks":{"elasticsearch":"up","postgres":"down"}}`+"\n" {
		t.Errorf("body %s", body)
	}
	for _, leak := range []string{"10.1.2.3", "cqrsflow", "prod", "password"} {
		if strings.Contains(body, leak) {
			t.Errorf("body reveals %q: %s", leak, body)
		}
	}
	if !strings.Contains(logs.String(), "password authentication failed") || !strings.Contains(logs.String(), `"check":"postgres"`) {
		t.Errorf("the failure is not logged: %s", logs.String())
	}
	// Still down: not logged again within logEvery.
	readyz(t, h)
	readyz(t, h)
	if n := strings.Count(logs.String(), "readiness check failed"); n != 1 {
		t.Errorf("%d warnings for one outage, want 1", n)
	}
	pgDown.Store(false)
	if code, body, _ := readyz(t, h); code != 200 || body != `{"status":"ready","checks":{"elasticsearch":"up","postgres":"up"}}`+"\n" {
		t.Errorf("recovered: %d %s", code, body)
	}
	if !strings.Contains(logs.String(), "readiness check recovered") {
		t.Errorf("recovery not logged: %s", logs.String())
	}
	h.SetDraining()
	if code, _, r := readyz(t, h); code != 503 || r.Status != "unready" || !r.Draining || r.Checks["postgres"] != "up" {
		t.Errorf("draining: %d %+v", code, r)
	}
}

// A flood of /readyz calls pings each dependency once per CacheFor, and
// concurrent callers share one round.
func TestReadyzCachesChecks(t *testing.T) {
	var pings atomic.Int32
	h := NewHealth(map[string]CheckFunc{"postgres": func(context.Context) error {
		pings.Add(1)
		time.Sleep(20 * time.Millisecond)
		return nil
	}}).CacheFor(time.Hour)
	var wg sync.WaitGroup
	for range 200 {
		wg.Go(func() {
			w := httptest.NewRecorder()
			h.ReadyzHandler().ServeHTTP(w, httptest.NewRequest("GET", "/readyz", nil))
			if w.Code != 200 {
				t.Errorf("readyz %d", w.Code)
			}
		})
	}
	wg.Wait()
	if n := pings.Load(); n != 1 {
		t.Errorf("%d pings for 200 calls, want 1", n)
	}
	h.CacheFor(0)
	readyz(t, h)
	if n := pings.Load(); n != 2 {
		t.Errorf("%d pings after the cache expired, want 2", n)
	}
}

// A check that hangs is bounded by the timeout, and does not delay the
// others; a caller that hangs up does not turn a check down.
func TestReadyzChecksAreBoundedAndDetached(t *testing.T) {
	h := NewHealth(map[string]CheckFunc{
		"kafka":         func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() },
		"elasticsearch": func(ctx context.Context) error { time.Sleep(50 * time.Millisecond); return ctx.Err() },
	}).CacheFor(0)
	h.timeout = 300 * time.Millisecond
	start := time.Now()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	r := h.Ready(ctx)
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("took %s", d)
	}
	if r.Checks["kafka"] != "down" || r.Checks["elasticsearch"] != "up" {
		t.Errorf("checks %+v", r.Checks)
	}
}

func TestNewServerBoundsEveryPhase(t *testing.T) {
	s := NewServer("127.0.0.1:0", http.NotFoundHandler())
	if s.ReadHeaderTimeout <= 0 || s.ReadTimeout <= 0 || s.WriteTimeout <= 0 || s.IdleTimeout <= 0 ||
		s.MaxHeaderBytes <= 0 || s.MaxHeaderBytes > 1<<20 {
		t.Errorf("server limits %+v", s)
	}
}

// Errors reach the log masked: a failed connection often quotes its
// connection string.
func TestLoggerMasksErrors(t *testing.T) {
	var out syncBuffer
	log := NewLogger(&out, "info").With("err", "dial postgres://u:withpw@h/db")
	_, perr := url.Parse("postgres://u:hunter2@h:x/db")
	log.Error("opening", "err", perr, "cause", errors.New("host=h password=kv-secret dbname=d"),
		slog.Group("g", "err", "token=grp-secret"), "route", "/v1/products")
	logged := out.String()
	for _, secret := range []string{"withpw", "hunter2", "kv-secret", "grp-secret"} {
		if strings.Contains(logged, secret) {
			t.Errorf("log reveals %q: %s", secret, logged)
		}
	}
	if !strings.Contains(logged, `invalid port`) || !strings.Contains(logged, `"route":"/v1/products"`) {
		t.Errorf("log lost its content: %s", logged)
	}
}

// The profile routes answer, and Run with no address is off.
func TestDebug(t *testing.T) {
	srv := httptest.NewServer(Debug{}.Handler())
	defer srv.Close()
	res, err := http.Get(srv.URL + "/debug/pprof/goroutine?debug=1")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || !strings.Contains(string(body), "goroutine profile") {
		t.Errorf("goroutine profile: %d %.100s", res.StatusCode, body)
	}
	done := make(chan error, 1)
	go func() { done <- (Debug{}).Run(context.Background()) }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run without an address: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Error("Run without an address did not return")
	}
}

// A record with nothing to mask is logged exactly as the JSON handler
// alone logs it; one error anywhere (a nested group included) is masked.
func TestLoggerPassesCleanRecords(t *testing.T) {
	attrs := []any{"method", "POST", "status", 201, "duration_ms", 0.25, slog.Group("g", "a", 1, "b", "x"),
		"route", "/v1/products", "remote", "127.0.0.1", "principal", "svc", "bytes", 50, "request_id", "r1"}
	var masked, plain syncBuffer
	NewLogger(&masked, "info").Info("http request", attrs...)
	slog.New(slog.NewJSONHandler(&plain, nil)).Info("http request", attrs...)
	strip := func(s string) string { _, rest, _ := strings.Cut(s, `"level"`); return rest }
	if strip(masked.String()) != strip(plain.String()) {
		t.Errorf("clean record changed:\n%s\n%s", masked.String(), plain.String())
	}
	var out syncBuffer
	NewLogger(&out, "info").Info("x", append(attrs, slog.Group("h", slog.Group("i", "cause", errors.New("password=deep-secret"))))...)
	if strings.Contains(out.String(), "deep-secret") {
		t.Errorf("nested error not masked: %s", out.String())
	}
}

// An access log line as the api writes one per request.
func BenchmarkLoggerAccessLine(b *testing.B) {
	log := NewLogger(io.Discard, "info")
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		log.LogAttrs(ctx, slog.LevelInfo, "http request", slog.String("method", "POST"), slog.String("route", "/v1/products"),
			slog.String("path", "/v1/products"), slog.Int("status", 201), slog.Float64("duration_ms", 0.25), slog.Int("bytes", 50),
			slog.String("request_id", "0193a3f0-1c2d-7e4f-8a9b-0c1d2e3f4a5b"), slog.String("principal", "svc"), slog.String("remote", "127.0.0.1"))
	}
}
