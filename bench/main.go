// Command bench runs cqrsflow's benchmarks against the running local stack:
//
//	go run ./bench <part> [flags]
//
// Each part lives in its own package under bench/internal and writes its
// result through bench/internal/result into $BENCH_RESULTS_DIR; the report
// part reads them from there. Exit status: 0 done, 1 the part failed, 2 a
// bad command line.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"syscall"

	"cqrsflow/bench/internal/cli"
	"cqrsflow/bench/internal/pipeline"
	"cqrsflow/bench/internal/projector"
	"cqrsflow/bench/internal/read"
	"cqrsflow/bench/internal/relay"
	"cqrsflow/bench/internal/report"
	"cqrsflow/bench/internal/write"
)

// part is one benchmark: it parses its own flags and prints its results.
type part func(ctx context.Context, args []string) error

var parts = map[string]part{
	"write":     write.Run,
	"relay":     relay.Run,
	"projector": projector.Run,
	"read":      read.Run,
	"pipeline":  pipeline.Run,
	"report":    report.Run,
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stderr)
	stop()
	os.Exit(code)
}

// run runs the part args[0] names and returns the exit status.
func run(ctx context.Context, args []string, stderr io.Writer) int {
	if len(args) == 0 || parts[args[0]] == nil {
		names := make([]string, 0, len(parts))
		for n := range parts {
			names = append(names, n)
		}
		slices.Sort(names)
		fmt.Fprintf(stderr, "usage: bench <part> [flags]; parts: %v\n", names)
		if len(args) > 0 && (args[0] == "-h" || args[0] == "-help" || args[0] == "--help") {
			return 0
		}
		return 2
	}
	err := parts[args[0]](ctx, args[1:])
	var usage cli.UsageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &usage):
		fmt.Fprintln(stderr, "bench "+args[0]+":", err)
		return 2
	default:
		fmt.Fprintln(stderr, "bench "+args[0]+":", err)
		return 1
	}
}
