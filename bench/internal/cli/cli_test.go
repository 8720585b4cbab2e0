package cli

import (
	"errors"
	"flag"
	"io"
	"testing"
)

func TestParse(t *testing.T) {
	newFS := func() *flag.FlagSet {
		fs := flag.NewFlagSet("x", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		fs.Int("n", 1, "")
		return fs
	}
	if err := Parse(newFS(), []string{"-n", "2"}); err != nil {
		t.Errorf("good flags: %v", err)
	}
	if err := Parse(newFS(), []string{"-h"}); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-h: err = %v, want flag.ErrHelp", err)
	}
	var ue UsageError
	for _, args := range [][]string{{"-nope"}, {"-n", "x"}, {"-n", "2", "extra"}} {
		if err := Parse(newFS(), args); !errors.As(err, &ue) {
			t.Errorf("%v: err = %v, want a UsageError", args, err)
		}
	}
	if err := Usagef("-rate: %d", 0); !errors.As(err, &ue) || err.Error() != "-rate: 0" {
		t.Errorf("Usagef = %v", err)
	}
}

func TestEnv(t *testing.T) {
	t.Setenv("BENCH_CLI_TEST", "")
	if got := Env("BENCH_CLI_TEST", "def"); got != "def" {
		t.Errorf("unset: %q", got)
	}
	t.Setenv("BENCH_CLI_TEST", "set")
	if got := Env("BENCH_CLI_TEST", "def"); got != "set" {
		t.Errorf("set: %q", got)
	}
}
