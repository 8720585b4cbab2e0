// Package obs holds what every cqrsflow process shares for observability:
// the slog JSON logger, a Prometheus registry with build info, and the
// /healthz, /readyz, /metrics endpoints.
package obs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"cqrsflow/internal/config"
)

// Namespace is the Prometheus namespace of every cqrsflow metric.
const Namespace = "cqrsflow"

// Version is the build version, set with -ldflags "-X cqrsflow/internal/obs.Version=…".
var Version = "dev"

// NewLogger returns a JSON slog logger at the given level ("debug",
// "info", "warn", "error"). Logged errors are masked (config.MaskURL):
// the error of a failed connection often quotes its connection string, and
// no password may reach a log.
func NewLogger(w io.Writer, level string) *slog.Logger {
	var l slog.Level
	switch strings.ToLower(level) {
	case "debug":
		l = slog.LevelDebug
	case "warn":
		l = slog.LevelWarn
	case "error":
		l = slog.LevelError
	default:
		l = slog.LevelInfo
	}
	return slog.New(maskErrors{slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l})})
}

// maskErrors masks error values, and any attribute named err, of every
// record. Other attributes pass untouched: masking costs a regular
// expression, and the access log of every request carries no error.
type maskErrors struct{ slog.Handler }

func (h maskErrors) Handle(ctx context.Context, r slog.Record) error {
	// Most records (every access log line) have nothing to mask: they
	// pass as they are instead of being copied attribute by attribute.
	clean := true
	r.Attrs(func(a slog.Attr) bool {
		clean = !needsMask(a)
		return clean
	})
	if clean {
		return h.Handler.Handle(ctx, r)
	}
	out := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(maskAttr(a))
		return true
	})
	return h.Handler.Handle(ctx, out)
}

func (h maskErrors) WithAttrs(as []slog.Attr) slog.Handler {
	masked := make([]slog.Attr, len(as))
	for i, a := range as {
		masked[i] = maskAttr(a)
	}
	return maskErrors{h.Handler.WithAttrs(masked)}
}

func (h maskErrors) WithGroup(name string) slog.Handler { return maskErrors{h.Handler.WithGroup(name)} }

// needsMask reports whether maskAttr would change a: an error value, an
// attribute named err, or a group holding one.
func needsMask(a slog.Attr) bool {
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindAny:
		_, isErr := v.Any().(error)
		return isErr || a.Key == "err"
	case slog.KindString:
		return a.Key == "err"
	case slog.KindGroup:
		for _, ga := range v.Group() {
			if needsMask(ga) {
				return true
			}
		}
	}
	return false
}

func maskAttr(a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindAny:
		if err, ok := v.Any().(error); ok {
			return slog.String(a.Key, config.MaskURL(err.Error()))
		}
		if a.Key == "err" {
			return slog.String(a.Key, config.MaskURL(fmt.Sprint(v.Any())))
		}
	case slog.KindString:
		if a.Key == "err" {
			return slog.String(a.Key, config.MaskURL(v.String()))
		}
	case slog.KindGroup:
		g := v.Group()
		masked := make([]any, len(g))
		for i, ga := range g {
			masked[i] = maskAttr(ga)
		}
		return slog.Group(a.Key, masked...)
	}
	return a
}

// NewRegistry returns a registry with Go/process collectors and
// cqrsflow_build_info{version} registered.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	bi := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: Namespace,
		Name:      "build_info",
		Help:      "Build information of the running cqrsflow binary; always 1.",
	}, []string{"version"})
	bi.WithLabelValues(Version).Set(1)
	reg.MustRegister(bi)
	return reg
}

// CheckFunc reports whether a dependency is reachable.
type CheckFunc func(ctx context.Context) error

// Health serves /healthz (alive) and /readyz (every check passes and the
// process is not shutting down).
//
// /readyz is public, so it tells only "up" or "down" per check: error
// texts name hosts, ports, users and databases and go to the log instead
// (a warning when a check goes down, repeated at most every logEvery
// while it stays down). Results are cached for CacheFor, and concurrent
// callers share one round of checks, so a flood of /readyz requests does
// not become a flood of pings to PostgreSQL, Kafka or Elasticsearch.
type Health struct {
	checks   map[string]CheckFunc
	draining atomic.Bool
	timeout  time.Duration
	cacheFor time.Duration
	logEvery time.Duration

	mu      sync.Mutex // held during a round of checks
	checked time.Time
	up      map[string]bool
	log     *slog.Logger
	warned  map[string]time.Time // when each down check was last logged
}

// NewHealth returns a Health with named readiness checks, results cached
// for a second.
func NewHealth(checks map[string]CheckFunc) *Health {
	return &Health{checks: checks, timeout: 2 * time.Second, cacheFor: time.Second, logEvery: 30 * time.Second,
		up: map[string]bool{}, warned: map[string]time.Time{}}
}

// CacheFor sets how long check results are reused (0: every call checks).
func (h *Health) CacheFor(d time.Duration) *Health {
	h.mu.Lock()
	h.cacheFor = d
	h.mu.Unlock()
	return h
}

// WithLog sets where failing checks are logged; obs.Service sets its own
// logger on a Health that has none.
func (h *Health) WithLog(log *slog.Logger) *Health {
	h.mu.Lock()
	h.log = log
	h.mu.Unlock()
	return h
}

func (h *Health) logDefault(log *slog.Logger) {
	h.mu.Lock()
	if h.log == nil {
		h.log = log
	}
	h.mu.Unlock()
}

// SetDraining turns readiness false; call it first on shutdown.
func (h *Health) SetDraining() { h.draining.Store(true) }

// Readiness is the body of /readyz.
type Readiness struct {
	Status   string            `json:"status"` // "ready" or "unready"
	Checks   map[string]string `json:"checks"` // name → "up" or "down"
	Draining bool              `json:"draining,omitempty"`
}

// Ready reports readiness, from checks at most CacheFor old.
func (h *Health) Ready(ctx context.Context) Readiness {
	up := h.results(ctx)
	r := Readiness{Status: "ready", Checks: make(map[string]string, len(up)), Draining: h.draining.Load()}
	for name, ok := range up {
		r.Checks[name] = "up"
		if !ok {
			r.Checks[name] = "down"
			r.Status = "unready"
		}
	}
	if r.Draining {
		r.Status = "unready"
	}
	return r
}

// results runs the checks unless the cached ones are fresh. The checks
// run in parallel, each bounded by the timeout and detached from the
// caller's cancellation: a client that hangs up must not mark a
// dependency down for everybody.
func (h *Health) results(ctx context.Context) map[string]bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.checked.IsZero() || time.Since(h.checked) >= h.cacheFor {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), h.timeout)
		defer cancel()
		errs := make(map[string]error, len(h.checks))
		var mu sync.Mutex
		var wg sync.WaitGroup
		for name, check := range h.checks {
			wg.Go(func() {
				err := check(ctx)
				mu.Lock()
				errs[name] = err
				mu.Unlock()
			})
		}
		wg.Wait()
		now := time.Now()
		for name, err := range errs {
			h.record(ctx, name, err, now)
		}
		h.checked = now
	}
	out := make(map[string]bool, len(h.up))
	maps.Copy(out, h.up)
	return out
}

// record stores one check's result and logs its failure (rate-limited)
// or its recovery.
func (h *Health) record(ctx context.Context, name string, err error, now time.Time) {
	was, seen := h.up[name]
	h.up[name] = err == nil
	if h.log == nil {
		return
	}
	switch {
	case err != nil && (was || !seen || now.Sub(h.warned[name]) >= h.logEvery):
		h.warned[name] = now
		h.log.WarnContext(ctx, "readiness check failed", "check", name, "err", err)
	case err == nil && seen && !was:
		delete(h.warned, name)
		h.log.InfoContext(ctx, "readiness check recovered", "check", name)
	}
}

// HealthzHandler answers 200 while the process runs.
func (h *Health) HealthzHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"status":"ok"}`)
	})
}

// ReadyzHandler answers 200 when ready, 503 otherwise, with the
// Readiness as JSON.
func (h *Health) ReadyzHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ready := h.Ready(r.Context())
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		if ready.Status != "ready" {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_ = json.NewEncoder(w).Encode(ready)
	})
}

// Mux returns an http.ServeMux with /healthz, /readyz and /metrics.
func (h *Health) Mux(reg *prometheus.Registry) *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("/healthz", h.HealthzHandler())
	mux.Handle("/readyz", h.ReadyzHandler())
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	return mux
}

// Serve runs an HTTP server on addr until ctx is done, then shuts it down
// gracefully within grace.
func Serve(ctx context.Context, addr string, handler http.Handler, grace time.Duration, log *slog.Logger) error {
	return ServeServer(ctx, NewServer(addr, handler), grace, log)
}

// ServeServer runs srv until ctx is done, then shuts it down gracefully
// within grace.
func ServeServer(ctx context.Context, srv *http.Server, grace time.Duration, log *slog.Logger) error {
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	log.Info("http server listening", "addr", srv.Addr)
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return err
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Stderr is the default log destination.
var Stderr io.Writer = os.Stderr
