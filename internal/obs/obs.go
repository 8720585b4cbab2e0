// Package obs holds what every cqrsflow process shares for observability:
// the slog JSON logger, a Prometheus registry with build info, and the
// /healthz, /readyz, /metrics endpoints.
package obs

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Namespace is the Prometheus namespace of every cqrsflow metric.
const Namespace = "cqrsflow"

// Version is the build version, set with -ldflags "-X cqrsflow/internal/obs.Version=…".
var Version = "dev"

// NewLogger returns a JSON slog logger at the given level ("debug", "info", "warn", "error").
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
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l}))
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

// Health serves /healthz (alive), /readyz (every check passes and the
// process is not shutting down) and /metrics.
type Health struct {
	checks   map[string]CheckFunc
	draining atomic.Bool
	timeout  time.Duration
}

// NewHealth returns a Health with named readiness checks.
func NewHealth(checks map[string]CheckFunc) *Health {
	return &Health{checks: checks, timeout: 2 * time.Second}
}

// SetDraining turns readiness false; call it first on shutdown.
func (h *Health) SetDraining() { h.draining.Store(true) }

// Ready runs every check and returns the failures by name.
func (h *Health) Ready(ctx context.Context) map[string]string {
	failed := map[string]string{}
	if h.draining.Load() {
		failed["process"] = "shutting down"
	}
	ctx, cancel := context.WithTimeout(ctx, h.timeout)
	defer cancel()
	for name, check := range h.checks {
		if err := check(ctx); err != nil {
			failed[name] = err.Error()
		}
	}
	return failed
}

// HealthzHandler answers 200 while the process runs.
func (h *Health) HealthzHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"status":"ok"}`)
	})
}

// ReadyzHandler answers 200 when ready, 503 with the failing checks otherwise.
func (h *Health) ReadyzHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		failed := h.Ready(r.Context())
		w.Header().Set("Content-Type", "application/json")
		if len(failed) == 0 {
			_, _ = io.WriteString(w, `{"status":"ready"}`)
			return
		}
		w.WriteHeader(http.StatusServiceUnavailable)
		var b strings.Builder
		b.WriteString(`{"status":"not_ready","failed":{`)
		first := true
		for k, v := range failed {
			if !first {
				b.WriteByte(',')
			}
			first = false
			b.WriteString(quote(k) + ":" + quote(v))
		}
		b.WriteString("}}")
		_, _ = io.WriteString(w, b.String())
	})
}

func quote(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`, "\r", `\r`, "\t", `\t`)
	return `"` + r.Replace(s) + `"`
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
	return ServeServer(ctx, &http.Server{Addr: addr, Handler: handler, ReadHeaderTimeout: 5 * time.Second}, grace, log)
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
