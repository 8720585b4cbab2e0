package cli

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"strings"
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

func TestCommandExitCodes(t *testing.T) {
	parse := func(args []string, stderr io.Writer) (string, error) {
		fs := flag.NewFlagSet("x", flag.ContinueOnError)
		fs.SetOutput(stderr)
		if err := fs.Parse(args); err != nil {
			return "", err
		}
		if fs.NArg() != 1 {
			return "", errors.New("want one argument")
		}
		return fs.Arg(0), nil
	}
	serve := func(_ context.Context, what string) error {
		if what == "fail" {
			return errors.New("it failed")
		}
		return nil
	}
	for _, c := range []struct {
		args   []string
		code   int
		stderr string
	}{
		{[]string{"-h"}, 0, "Usage"},
		{[]string{}, 2, "x: want one argument"},
		{[]string{"-nosuch"}, 2, "x: flag provided but not defined"},
		{[]string{"fail"}, 1, "x: it failed"},
		{[]string{"ok"}, 0, ""},
	} {
		var stderr bytes.Buffer
		code := Command("x", c.args, &stderr, parse, serve)
		if code != c.code || !strings.Contains(stderr.String(), c.stderr) {
			t.Errorf("%q: exit %d, stderr %q; want %d and %q", c.args, code, stderr.String(), c.code, c.stderr)
		}
	}
}
