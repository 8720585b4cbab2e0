// Command demo is a bounded load generator for a local cqrsflow (`make
// demo`): for DEMO_DURATION it sends a realistic mix of commands and queries
// (product edits with the odd stale If-Match → 409, order lifecycles, reads
// that wait for their version, searches) at DEMO_RATE requests/s so the
// dashboards move. It only talks to a loopback API.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}
