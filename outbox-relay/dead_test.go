package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"cqrsflow/internal/cli"
)

// TestDeadCommandLine: every malformed `dead` command line is a usage
// error (exit 2) found before any connection is made (POSTGRES_URL points
// nowhere: a connection attempt would exit 1), and never shows the
// password.
func TestDeadCommandLine(t *testing.T) {
	t.Setenv("POSTGRES_URL", "postgres://relay:hunter2@127.0.0.1:1/db?sslmode=disable")
	long := strings.Repeat("a", maxAggregateIDBytes+1)
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"dead"}, cli.ExitUsage, "name a command"},
		{[]string{"dead", "lst"}, cli.ExitUsage, `unknown command "dead lst"`},
		{[]string{"dead", "-h"}, cli.ExitOK, "discard"},
		{[]string{"dead", "retry", "-h"}, cli.ExitOK, "-aggregate"},
		{[]string{"dead", "list", "extra"}, cli.ExitUsage, "unexpected arguments"},
		{[]string{"dead", "list", "--limit", "0"}, cli.ExitUsage, "--limit"},
		{[]string{"dead", "list", "--limit", "many"}, cli.ExitUsage, "limit"},
		{[]string{"dead", "list", "--aggregate", ""}, cli.ExitUsage, "--aggregate"},
		{[]string{"dead", "list", "--aggregate", "   "}, cli.ExitUsage, "--aggregate"},
		{[]string{"dead", "list", "--aggregate", long}, cli.ExitUsage, "--aggregate"},
		{[]string{"dead", "list", "--aggregate", "\xff\xfe"}, cli.ExitUsage, "--aggregate"},
		{[]string{"dead", "list", "--aggregate-type", "pro duct"}, cli.ExitUsage, "--aggregate-type"},
		{[]string{"dead", "list", "--aggregate-type", "x';DROP TABLE outbox;--"}, cli.ExitUsage, "--aggregate-type"},
		{[]string{"dead", "list", "--json=maybe"}, cli.ExitUsage, "json"},
		{[]string{"dead", "retry"}, cli.ExitUsage, "name what to retry"},
		{[]string{"dead", "retry", "--id"}, cli.ExitUsage, "id"},
		{[]string{"dead", "retry", "--id", "x"}, cli.ExitUsage, `"x" is not an outbox id`},
		{[]string{"dead", "retry", "--id", "0"}, cli.ExitUsage, "not an outbox id"},
		{[]string{"dead", "retry", "--id", "-7"}, cli.ExitUsage, "not an outbox id"},
		{[]string{"dead", "retry", "--id", "1.5"}, cli.ExitUsage, "not an outbox id"},
		{[]string{"dead", "retry", "--id", "99999999999999999999"}, cli.ExitUsage, "not an outbox id"},
		{[]string{"dead", "retry", "--id", "1", "--all"}, cli.ExitUsage, "name what to retry"},
		{[]string{"dead", "retry", "--aggregate", "a", "--all"}, cli.ExitUsage, "name what to retry"},
		{[]string{"dead", "retry", "--id", "1", "--aggregate", "a"}, cli.ExitUsage, "name what to retry"},
		{[]string{"dead", "retry", "--aggregate-type", "product"}, cli.ExitUsage, "name what to retry"},
		{[]string{"dead", "retry", "--id", "1", "--aggregate-type", "product"}, cli.ExitUsage, "--aggregate-type goes with"},
		{[]string{"dead", "retry", "--id", "1", "2"}, cli.ExitUsage, "unexpected arguments"},
		{[]string{"dead", "retry", "--all", "--force"}, cli.ExitUsage, "force"},
		{[]string{"dead", "discard"}, cli.ExitUsage, "exactly one"},
		{[]string{"dead", "discard", "--id", "1", "--id", "2"}, cli.ExitUsage, "exactly one"},
		{[]string{"dead", "discard", "--id", "abc", "--yes"}, cli.ExitUsage, "not an outbox id"},
		{[]string{"dead", "discard", "--all", "--yes"}, cli.ExitUsage, "all"},
		{[]string{"dead", "discard", "--aggregate", "a", "--yes"}, cli.ExitUsage, "aggregate"},
		{[]string{"dead", "discard", "--id", "1", "--yes", "now"}, cli.ExitUsage, "unexpected arguments"},
	} {
		var stdout, stderr bytes.Buffer
		code := program.Run(context.Background(), tc.args, &stdout, &stderr)
		out := stdout.String() + stderr.String()
		if code != tc.code || !strings.Contains(out, tc.want) {
			t.Errorf("outbox-relay %q: exit %d, output %q; want exit %d and %q", tc.args, code, out, tc.code, tc.want)
		}
		if strings.Contains(out, "hunter2") {
			t.Errorf("outbox-relay %q reveals the password:\n%s", tc.args, out)
		}
	}
}

// An unreachable database is a failure (exit 1), not a usage error.
func TestDeadCommandWithoutDatabaseFails(t *testing.T) {
	t.Setenv("POSTGRES_URL", "postgres://relay:hunter2@127.0.0.1:1/db?sslmode=disable&connect_timeout=2")
	var stdout, stderr bytes.Buffer
	code := program.Run(context.Background(), []string{"dead", "list"}, &stdout, &stderr)
	if code != cli.ExitFailure || strings.Contains(stderr.String(), "hunter2") {
		t.Fatalf("exit %d, stderr %q; want 1 without the password", code, stderr.String())
	}
}
