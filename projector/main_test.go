package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"cqrsflow/internal/cli"
)

// TestCommandLine: typos and unknown commands never start a worker in the
// group; -h prints usage without secrets.
func TestCommandLine(t *testing.T) {
	t.Setenv("ELASTICSEARCH_URL", "https://elastic:esPassw0rd@127.0.0.1:1")
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"-h"}, cli.ExitOK, "replay"},
		{[]string{"run", "-h"}, cli.ExitOK, "BATCH_MAX_RECORDS"},
		{[]string{"replay", "-h"}, cli.ExitOK, "-offsets"},
		{[]string{"--version"}, cli.ExitOK, "projector "},
		{[]string{"replays"}, cli.ExitUsage, `unknown command "replays"`},
		{[]string{"verifyy", "--projection", "products"}, cli.ExitUsage, "unknown command"},
		{[]string{"run", "now"}, cli.ExitUsage, "unexpected arguments"},
		{[]string{"replay", "--projection", "nope", "--to", "earliest"}, cli.ExitUsage, `"nope" is not one of orders, products`},
		{[]string{"replay", "--projection", "products"}, cli.ExitUsage, "exactly one of --to and --offsets"},
		{[]string{"rebuild", "--projection", "products", "--version", "1"}, cli.ExitUsage, "--version must be >= 2"},
		{[]string{"-projections", "products,nope", "-batch-max-records", "0"}, cli.ExitUsage, "BATCH_MAX_RECORDS"},
	} {
		var stdout, stderr bytes.Buffer
		code := program.Run(context.Background(), tc.args, &stdout, &stderr)
		out := stdout.String() + stderr.String()
		if code != tc.code || !strings.Contains(out, tc.want) {
			t.Errorf("projector %v: exit %d, output %q; want exit %d and %q", tc.args, code, out, tc.code, tc.want)
		}
		if strings.Contains(out, "esPassw0rd") {
			t.Errorf("projector %v reveals the Elasticsearch password:\n%s", tc.args, out)
		}
	}
}
