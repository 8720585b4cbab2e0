package obs

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"strconv"
	"time"

	"cqrsflow/internal/config"
)

// Debug serves Go's runtime profiles (net/http/pprof) on its own
// listener, for profiling a binary under load. A profile shows what the
// process does and its heap holds request data, so the address must be a
// loopback one and the setting is off unless asked for.
type Debug struct {
	Addr string // host:port on loopback; "" = off
	Log  *slog.Logger
}

// debugWriteTimeout bounds one answer: a CPU profile is written after the
// seconds it was asked for, at most this long.
const debugWriteTimeout = 2 * time.Minute

// ValidateDebugAddr accepts "" (off) or a loopback host:port.
func ValidateDebugAddr(setting, addr string) error {
	if addr == "" {
		return nil
	}
	host, port, err := net.SplitHostPort(addr)
	if n, perr := strconv.Atoi(port); err != nil || perr != nil || n < 1 || n > 65535 {
		return fmt.Errorf("%s: %q is not host:port (port 1 to 65535)", setting, addr)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("%s: %q is not a loopback address (profiles must not be reachable from outside the host)", setting, addr)
	}
	return nil
}

// Register registers DEBUG_ADDR (off by default) on s as d.Addr: the
// setting every binary's long-running command takes.
func (d *Debug) Register(s *config.Set) {
	s.String(&d.Addr, "DEBUG_ADDR", "", "serve Go's pprof profiles (/debug/pprof/) on this loopback host:port; empty: off")
}

// Validate is ValidateDebugAddr of DEBUG_ADDR, which must also differ
// from the binary's other listen address (setting other).
func (d Debug) Validate(setting, other string) error {
	if err := ValidateDebugAddr("DEBUG_ADDR", d.Addr); err != nil {
		return err
	}
	if d.Addr != "" && d.Addr == other {
		return fmt.Errorf("DEBUG_ADDR must differ from %s", setting)
	}
	return nil
}

// Handler is the profile routes under /debug/pprof/.
func (d Debug) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

// Run serves the profiles until ctx ends (a worker of Service.Run); with
// no Addr it returns at once.
func (d Debug) Run(ctx context.Context) error {
	if d.Addr == "" {
		return nil
	}
	srv := NewServer(d.Addr, d.Handler())
	srv.WriteTimeout = debugWriteTimeout
	return ServeServer(ctx, srv, time.Second, d.Log)
}
