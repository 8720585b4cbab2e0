// Command outbox-relay is a cqrsflow process (placeholder wiring: health and metrics only).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"cqrsflow/internal/config"
	"cqrsflow/internal/obs"
)

func main() {
	if err := run(context.Background(), os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "outbox-relay:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("outbox-relay", flag.ContinueOnError)
	var addr string
	config.String(fs, &addr, "METRICS_ADDR", "127.0.0.1:9101", "listen address for health and metrics")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := obs.NewLogger(obs.Stderr, "info").With("component", "outbox-relay")
	h := obs.NewHealth(nil)
	return obs.Serve(ctx, addr, h.Mux(obs.NewRegistry()), 10*time.Second, log)
}
