package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"cqrsflow/internal/config"
)

// testProgram has a default command with a setting and a validation, a
// failing command, one taking arguments and a nested group without a
// default.
func testProgram(ran *[]string) *Program {
	leaf := func(name string) *Command {
		return &Command{Name: name, Setup: func(s *config.Set) Action {
			return Action{Run: func(context.Context, Env) error { *ran = append(*ran, name); return nil }}
		}}
	}
	return &Program{Name: "prog", Summary: "a test program", Commands: []*Command{
		{Name: "run", Default: true, Summary: "runs", Setup: func(s *config.Set) Action {
			var n int
			var secret string
			s.Int(&n, "TEST_CLI_N", 1, "a number")
			s.Secret(&secret, "TEST_CLI_SECRET", "a secret")
			return Action{
				Validate: func() error {
					if n < 1 {
						return errors.New("TEST_CLI_N must be >= 1")
					}
					return nil
				},
				Run: func(_ context.Context, env Env) error { *ran = append(*ran, "run"); return nil },
			}
		}},
		{Name: "fail", Setup: func(s *config.Set) Action {
			return Action{Run: func(context.Context, Env) error { return errors.New("it broke") }}
		}},
		{Name: "lookup", Setup: func(s *config.Set) Action {
			return Action{Run: func(context.Context, Env) error {
				return fmt.Errorf("looking up: %w", UsageError(errors.New("no thing with id 7")))
			}}
		}},
		{Name: "show", Args: "ID", MinArgs: 1, MaxArgs: 1, Setup: func(s *config.Set) Action {
			return Action{Quiet: true, Run: func(_ context.Context, env Env) error { *ran = append(*ran, "show "+env.Args[0]); return nil }}
		}},
		{Name: "dlq", Summary: "dead letters", Commands: []*Command{leaf("list"), leaf("redrive")}},
	}}
}

func TestExitStatusesAndDispatch(t *testing.T) {
	t.Setenv("TEST_CLI_SECRET", "do-not-print-me")
	for _, tc := range []struct {
		args []string
		code int
		ran  string
		out  string
	}{
		{nil, ExitOK, "run", ""},
		{[]string{"run", "-test-cli-n", "3"}, ExitOK, "run", ""},
		{[]string{"-test-cli-n", "3"}, ExitOK, "run", ""},
		{[]string{"-h"}, ExitOK, "", "Commands:"},
		{[]string{"help"}, ExitOK, "", "dlq"},
		{[]string{"run", "-h"}, ExitOK, "", "TEST_CLI_N"},
		{[]string{"--version"}, ExitOK, "", "prog dev"},
		{[]string{"run", "--version"}, ExitOK, "", "prog dev"},
		{[]string{"runs"}, ExitUsage, "", `unknown command "runs"`},
		{[]string{"run", "extra"}, ExitUsage, "", "unexpected arguments"},
		{[]string{"run", "-test-cli-n", "0"}, ExitUsage, "", "TEST_CLI_N must be >= 1"},
		{[]string{"run", "-test-cli-n", "x"}, ExitUsage, "", "test-cli-n"},
		{[]string{"run", "-no-such-flag"}, ExitUsage, "", "no-such-flag"},
		{[]string{"fail"}, ExitFailure, "", "it broke"},
		{[]string{"lookup"}, ExitUsage, "", "no thing with id 7"},
		{[]string{"show"}, ExitUsage, "", "want ID"},
		{[]string{"show", "a", "b"}, ExitUsage, "", "want ID"},
		{[]string{"show", "a"}, ExitOK, "show a", ""},
		{[]string{"dlq"}, ExitUsage, "", "name a command"},
		{[]string{"dlq", "lst"}, ExitUsage, "", `unknown command "dlq lst"`},
		{[]string{"dlq", "list"}, ExitOK, "list", ""},
		{[]string{"dlq", "-h"}, ExitOK, "", "redrive"},
		{[]string{"dlq", "list", "x"}, ExitUsage, "", "unexpected arguments"},
	} {
		var ran []string
		var stdout, stderr bytes.Buffer
		code := testProgram(&ran).Run(context.Background(), tc.args, &stdout, &stderr)
		out := stdout.String() + stderr.String()
		if code != tc.code || strings.Join(ran, ",") != tc.ran || !strings.Contains(out, tc.out) {
			t.Errorf("prog %q: exit %d, ran %v, output %q; want exit %d, ran %q, output containing %q",
				tc.args, code, ran, out, tc.code, tc.ran, tc.out)
		}
		if strings.Contains(out, "do-not-print-me") {
			t.Errorf("prog %q printed the secret:\n%s", tc.args, out)
		}
	}
}

func TestStartupLineLogsSettingsMasked(t *testing.T) {
	t.Setenv("TEST_CLI_SECRET", "do-not-print-me")
	var stdout, stderr bytes.Buffer
	var ran []string
	if code := testProgram(&ran).Run(context.Background(), []string{"run"}, &stdout, &stderr); code != ExitOK {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	log := stderr.String()
	if strings.Count(log, `"msg":"starting"`) != 1 || !strings.Contains(log, `"test_cli_n":"1"`) ||
		!strings.Contains(log, `"test_cli_secret":"(set, hidden)"`) || !strings.Contains(log, `"service":"prog"`) {
		t.Fatalf("start-up line: %s", log)
	}
	if strings.Contains(log, "do-not-print-me") {
		t.Fatalf("start-up line reveals the secret: %s", log)
	}
	stderr.Reset()
	if code := testProgram(&ran).Run(context.Background(), []string{"show", "x"}, &stdout, &stderr); code != ExitOK || stderr.Len() != 0 {
		t.Fatalf("quiet command logged: exit %d %q", code, stderr.String())
	}
}
