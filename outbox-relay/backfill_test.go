package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"cqrsflow/internal/cli"
)

// TestBackfillCommandLine: every malformed `backfill` command line is a
// usage error (exit 2) found before any connection is made (POSTGRES_URL
// and KAFKA_BROKERS point nowhere: a connection attempt would exit 1),
// and never shows the password.
func TestBackfillCommandLine(t *testing.T) {
	t.Setenv("POSTGRES_URL", "postgres://relay:hunter2@127.0.0.1:1/db?sslmode=disable")
	t.Setenv("KAFKA_BROKERS", "127.0.0.1:1")
	ok := []string{"backfill", "--run", "r1", "--aggregate-type", "product"}
	with := func(more ...string) []string { return append(append([]string{}, ok...), more...) }
	long := strings.Repeat("a", maxAggregateIDBytes+1)
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"backfill", "-h"}, cli.ExitOK, "-from-position"},
		{[]string{"backfill", "--help"}, cli.ExitOK, "-aggregate-type"},
		{[]string{"backfill"}, cli.ExitUsage, "--aggregate-type is required"},
		{[]string{"backfill", "--aggregate-type", "product"}, cli.ExitUsage, "--run"},
		{[]string{"backfill", "--run", "a b", "--aggregate-type", "product"}, cli.ExitUsage, "--run"},
		{[]string{"backfill", "--run", strings.Repeat("r", 101), "--aggregate-type", "product"}, cli.ExitUsage, "--run"},
		{[]string{"backfill", "--run", "r1", "--aggregate-type", "invoice"}, cli.ExitUsage, `"invoice" is not an aggregate type`},
		{[]string{"backfill", "--run", "r1", "--aggregate-type", "x';DROP TABLE events;--"}, cli.ExitUsage, "--aggregate-type"},
		{[]string{"backfill", "--run", "r1", "--aggregate-type", "Product"}, cli.ExitUsage, "--aggregate-type"},
		{with("--from-position", "-1"), cli.ExitUsage, "--from-position must be >= 0"},
		{with("--from-position", "abc"), cli.ExitUsage, "from-position"},
		{with("--from-position", "99999999999999999999"), cli.ExitUsage, "from-position"},
		{with("--from-time", "yesterday"), cli.ExitUsage, "--from-time"},
		{with("--from-time", "2026-13-01T00:00:00Z"), cli.ExitUsage, "--from-time"},
		{with("--from-time", "2026-01-01"), cli.ExitUsage, "--from-time"},
		{with("--aggregate", ""), cli.ExitUsage, "--aggregate"},
		{with("--aggregate", "  "), cli.ExitUsage, "--aggregate"},
		{with("--aggregate", long), cli.ExitUsage, "--aggregate"},
		{with("--aggregate", "\xff\xfe"), cli.ExitUsage, "--aggregate"},
		{with("--batch-size", "0"), cli.ExitUsage, "--batch-size"},
		{with("--batch-size", "50001"), cli.ExitUsage, "--batch-size"},
		{with("--partitions", "-1"), cli.ExitUsage, "--partitions"},
		{with("--partitions", "40000"), cli.ExitUsage, "--partitions"},
		{with("--topic-prefix", "a b"), cli.ExitUsage, "TOPIC_PREFIX"},
		{with("--topic-prefix", ""), cli.ExitUsage, "TOPIC_PREFIX"},
		{with("--restart=maybe"), cli.ExitUsage, "restart"},
		{with("--follow"), cli.ExitUsage, "follow"},
		{with("extra"), cli.ExitUsage, "unexpected arguments"},
		{with("--delivery-timeout", "-1s"), cli.ExitUsage, "DELIVERY_TIMEOUT"},
		// Everything wrong at once is reported at once.
		{[]string{"backfill", "--run", "", "--aggregate-type", "nope", "--from-position", "-5", "--from-time", "x"}, cli.ExitUsage, "--from-position must be >= 0"},
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
func TestBackfillWithoutDatabaseFails(t *testing.T) {
	t.Setenv("POSTGRES_URL", "postgres://relay:hunter2@127.0.0.1:1/db?sslmode=disable&connect_timeout=2")
	var stdout, stderr bytes.Buffer
	code := program.Run(context.Background(), []string{"backfill", "--run", "r", "--aggregate-type", "order"}, &stdout, &stderr)
	if code != cli.ExitFailure || strings.Contains(stderr.String(), "hunter2") {
		t.Fatalf("exit %d, stderr %q; want 1 without the password", code, stderr.String())
	}
}

func TestParsePrefixes(t *testing.T) {
	types := []string{"product", "order"}
	got, err := parsePrefixes([]string{"product=cqrsflow-p12"}, types)
	if err != nil || len(got) != 1 || got["product"] != "cqrsflow-p12" {
		t.Fatalf("got %v, %v", got, err)
	}
	for _, bad := range [][]string{{"product"}, {"=x"}, {"product="}, {"invoice=x"}, {"product=a b"}, {"product=a", "product=b"}} {
		if _, err := parsePrefixes(bad, types); err == nil || !strings.Contains(err.Error(), "AGGREGATE_TOPIC_PREFIXES") {
			t.Errorf("%q: err = %v, want an AGGREGATE_TOPIC_PREFIXES error", bad, err)
		}
	}
	if _, err := parseConfig([]string{"-aggregate-topic-prefixes", "invoice=x"}); err == nil {
		t.Fatal("the relay accepted a prefix for an unknown aggregate type")
	}
}
