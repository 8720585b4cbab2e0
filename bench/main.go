// Command bench runs cqrsflow's benchmarks against the running local stack:
//
//	go run ./bench <part> [flags]
//
// Each part lives in its own file and registers itself in parts.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"sort"
	"syscall"
)

// part is one benchmark: it parses its own flags and prints its results.
type part func(ctx context.Context, args []string) error

var parts = map[string]part{}

func main() {
	if len(os.Args) < 2 || parts[os.Args[1]] == nil {
		names := make([]string, 0, len(parts))
		for n := range parts {
			names = append(names, n)
		}
		sort.Strings(names)
		fmt.Fprintf(os.Stderr, "usage: bench <part> [flags]; parts: %v\n", names)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := parts[os.Args[1]](ctx, os.Args[2:]); err != nil {
		fmt.Fprintln(os.Stderr, "bench "+os.Args[1]+":", err)
		os.Exit(1)
	}
}
