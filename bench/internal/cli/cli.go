// Package cli is what every benchmark part's command line shares: strict
// flag parsing whose errors main can tell from a failed measurement
// (usage error: exit 2; -h: exit 0; anything else: exit 1).
package cli

import (
	"errors"
	"flag"
	"fmt"
	"os"
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
