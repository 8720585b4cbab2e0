// Package cli is what every benchmark part's command line shares: strict
// flag parsing whose errors main can tell from a failed measurement
// (usage error: exit 2; -h: exit 0; anything else: exit 1).
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// UsageError is a bad command line.
type UsageError struct{ Err error }

func (e UsageError) Error() string { return e.Err.Error() }
func (e UsageError) Unwrap() error { return e.Err }

// Parse parses args with fs and refuses leftover arguments. -h returns
// flag.ErrHelp; every other problem is a UsageError.
func Parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return UsageError{err}
	}
	if fs.NArg() > 0 {
		return UsageError{fmt.Errorf("unexpected arguments %v", fs.Args())}
	}
	return nil
}

// Usagef is a UsageError from a message, for flag values Parse cannot
// check by itself.
func Usagef(format string, a ...any) error { return UsageError{fmt.Errorf(format, a...)} }

// Env is the environment variable name, or def when it is unset or empty:
// the default of a flag that the environment may also set.
func Env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// Command is the whole main of a helper binary the benchmarks start (the
// hop, the raw relay): parse reads args (-h: exit 0; any other error:
// exit 2), then serve runs until SIGINT or SIGTERM (exit 0) or until it
// fails (exit 1). Errors are written to stderr after name.
func Command[C any](name string, args []string, stderr io.Writer, parse func([]string, io.Writer) (C, error), serve func(context.Context, C) error) int {
	cfg, err := parse(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := serve(ctx, cfg); err != nil && ctx.Err() == nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return 1
	}
	return 0
}
