package obs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"golang.org/x/sync/errgroup"
)

// Service is the shutdown idiom every long-running cqrsflow binary shares:
// an HTTP server (the API itself, or health and metrics) plus workers.
//
// Run serves until ctx ends or a part fails. On the way down, readiness
// turns false first (load balancers stop sending), then the workers, which
// see the cancelled context, finish what they hold (the relay its batch in
// flight, the projector its flush and commit), and only then does the HTTP
// server drain its in-flight requests within Grace, so /metrics stays
// scrapeable while the workers finish. A server that cannot listen, or a
// worker that fails, stops the others.
type Service struct {
	Addr    string
	Handler http.Handler
	Health  *Health
	Grace   time.Duration
	Log     *slog.Logger
	// Server, when set, configures the http.Server before it starts
	// (timeouts, header limits); it starts from NewServer's.
	Server func(*http.Server)
}

// Limits of NewServer: every phase of a connection is bounded, so a slow
// or idle client cannot hold a connection (and its goroutine) forever.
const (
	DefaultReadHeaderTimeout = 5 * time.Second
	DefaultReadTimeout       = 30 * time.Second
	DefaultWriteTimeout      = 30 * time.Second
	DefaultIdleTimeout       = 2 * time.Minute
	DefaultMaxHeaderBytes    = 64 << 10
)

// NewServer returns an http.Server for addr with the default limits.
func NewServer(addr string, h http.Handler) *http.Server {
	return &http.Server{Addr: addr, Handler: h, ReadHeaderTimeout: DefaultReadHeaderTimeout,
		ReadTimeout: DefaultReadTimeout, WriteTimeout: DefaultWriteTimeout, IdleTimeout: DefaultIdleTimeout,
		MaxHeaderBytes: DefaultMaxHeaderBytes}
}

// Run runs the server and the workers; see Service.
func (s Service) Run(ctx context.Context, workers ...func(context.Context) error) error {
	srvCtx, stopServer := context.WithCancel(context.WithoutCancel(ctx))
	defer stopServer()
	served := make(chan error, 1)
	go func() { served <- s.serve(srvCtx) }()

	if s.Log != nil {
		s.Health.logDefault(s.Log)
	}
	g, gctx := errgroup.WithContext(ctx)
	stopDrain := context.AfterFunc(gctx, s.Health.SetDraining)
	defer stopDrain()
	serverDone := false
	g.Go(func() error {
		select {
		case err := <-served:
			serverDone = true
			if err == nil {
				err = errors.New("stopped unexpectedly")
			}
			return fmt.Errorf("http server on %s: %w", s.Addr, err)
		case <-gctx.Done():
			return nil
		}
	})
	for _, w := range workers {
		g.Go(func() error {
			err := w(gctx)
			if gctx.Err() != nil && errors.Is(err, context.Canceled) {
				return nil // the shutdown it was asked for
			}
			return err
		})
	}
	err := g.Wait()
	s.Health.SetDraining()
	if !serverDone {
		stopServer()
		if serr := <-served; serr != nil {
			err = errors.Join(err, fmt.Errorf("http server on %s: %w", s.Addr, serr))
		}
	}
	return err
}

func (s Service) serve(ctx context.Context) error {
	srv := NewServer(s.Addr, s.Handler)
	if s.Server != nil {
		s.Server(srv)
	}
	return ServeServer(ctx, srv, s.Grace, s.Log)
}
