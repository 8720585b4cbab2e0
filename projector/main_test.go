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
	t.Setenv("KAFKA_SASL_PASSWORD", "kafkaPassw0rd")
	t.Setenv("ELASTICSEARCH_API_KEY", "esApiKeyS3cret")
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
		{[]string{"-kafka-tls", "-kafka-tls-ca-file", "/nonexistent/ca.pem"}, cli.ExitUsage, "KAFKA_TLS_CA_FILE"},
		{[]string{"replay", "--projection", "products", "--to", "earliest", "-kafka-sasl-mechanism", "OAUTHBEARER"}, cli.ExitUsage, "KAFKA_SASL_MECHANISM"},
		{[]string{"rebuild", "--projection", "products", "--version", "2", "-elasticsearch-ca-fingerprint", "12:34"}, cli.ExitUsage, "ELASTICSEARCH_CA_FINGERPRINT"},
		{[]string{"-elasticsearch-username", "elastic"}, cli.ExitUsage, "ELASTICSEARCH_USERNAME and ELASTICSEARCH_PASSWORD go together"},
		{[]string{"run", "--park-timeout", "0s"}, cli.ExitUsage, "PARK_TIMEOUT: must be > 0"},
		{[]string{"run", "--batch-max-bytes", "1024"}, cli.ExitUsage, "BATCH_MAX_BYTES: 1024 not in 65536..268435456"},
		{[]string{"run", "--batch-max-bytes", "99999999999999999999"}, cli.ExitUsage, "-batch-max-bytes: not an integer"},
		{[]string{"run", "--doc-cache-entries", "0"}, cli.ExitUsage, "DOC_CACHE_ENTRIES: 0 not in 1..10000000"},
		// DEBUG_ADDR: loopback only, not the metrics address, run only.
		{[]string{"run", "-h"}, cli.ExitOK, "DEBUG_ADDR"},
		{[]string{"run", "-debug-addr", "10.1.2.3:6060"}, cli.ExitUsage, "DEBUG_ADDR: \"10.1.2.3:6060\" is not a loopback address"},
		{[]string{"run", "-debug-addr", "localhost"}, cli.ExitUsage, "is not host:port"},
		{[]string{"run", "-debug-addr", "127.0.0.1:9102"}, cli.ExitUsage, "DEBUG_ADDR must differ from METRICS_ADDR"},
		{[]string{"verify", "--projection", "products", "--all", "-debug-addr", "127.0.0.1:6060"}, cli.ExitUsage, "debug-addr"},
		// dlq: nested commands, strict flags, hostile values.
		{[]string{"dlq"}, cli.ExitUsage, "name a command (list, show, redrive, skip)"},
		{[]string{"dlq", "-h"}, cli.ExitOK, "redrive"},
		{[]string{"dlq", "list", "-h"}, cli.ExitOK, "-reason"},
		{[]string{"dlq", "lists"}, cli.ExitUsage, `unknown command "dlq lists"`},
		{[]string{"dlq", "list"}, cli.ExitUsage, `--projection: "" is not one of`},
		{[]string{"dlq", "list", "--projection", "products", "--reason", "bogus"}, cli.ExitUsage, `--reason: "bogus" is not one of invalid_envelope`},
		{[]string{"dlq", "list", "--projection", "products", "--aggregate", ""}, cli.ExitUsage, "--aggregate: empty"},
		{[]string{"dlq", "list", "--projection", "products", "--aggregate", strings.Repeat("a", 513)}, cli.ExitUsage, "--aggregate: 513 bytes, longer than the 512"},
		{[]string{"dlq", "list", "--projection", "products", "--limit", "-1"}, cli.ExitUsage, "--limit: must be >= 0"},
		{[]string{"dlq", "list", "--projection", "products", "--timeout", "0s"}, cli.ExitUsage, "--timeout: must be > 0"},
		{[]string{"dlq", "show", "--projection", "products"}, cli.ExitUsage, "exactly one of --aggregate and --dlq-offset"},
		{[]string{"dlq", "show", "--projection", "products", "--dlq-offset", "x:1"}, cli.ExitUsage, `--dlq-offset: "x:1" is not partition:offset`},
		{[]string{"dlq", "show", "--projection", "products", "--dlq-offset", "0:1", "--version", "2"}, cli.ExitUsage, "--version: must be >= 1, with --aggregate"},
		{[]string{"dlq", "redrive", "--projection", "products", "now"}, cli.ExitUsage, "unexpected arguments"},
		{[]string{"dlq", "redrive", "--projection", "orders", "--reason", "ES_REJECTED"}, cli.ExitUsage, `--reason: "ES_REJECTED"`},
		{[]string{"dlq", "skip", "--projection", "products", "--aggregate", "a", "--version", "abc"}, cli.ExitUsage, `invalid value "abc" for flag -version`},
		{[]string{"dlq", "skip", "--projection", "products", "--aggregate", "a", "--version", "0"}, cli.ExitUsage, "--version: required, >= 1"},
		{[]string{"dlq", "skip", "--projection", "products", "--aggregate", "a", "--version", "-3"}, cli.ExitUsage, "--version: required, >= 1"},
		{[]string{"dlq", "skip", "--projection", "products", "--version", "3"}, cli.ExitUsage, "--aggregate: required"},
		{[]string{"dlq", "skip", "--projection", "products", "--aggregate", "a", "--version", "99999999999999999999"}, cli.ExitUsage, "value out of range"},
		// verify: strict flags, hostile values.
		{[]string{"verify", "-h"}, cli.ExitOK, "-delete-unexpected"},
		{[]string{"verify", "--projection", "products"}, cli.ExitUsage, "exactly one of --aggregate, --sample N and --all"},
		{[]string{"verify", "--projection", "products", "--all", "--sample", "5"}, cli.ExitUsage, "exactly one of --aggregate"},
		{[]string{"verify", "--projection", "products", "--all", "--aggregate", "a"}, cli.ExitUsage, "exactly one of --aggregate"},
		{[]string{"verify", "--projection", "products", "--all", "--sample", "0"}, cli.ExitUsage, "--sample: 0, want >= 1"},
		{[]string{"verify", "--projection", "products", "--sample", "-1"}, cli.ExitUsage, "--sample: -1, want >= 1"},
		{[]string{"verify", "--projection", "products", "--sample", "1e3"}, cli.ExitUsage, `invalid value "1e3" for flag -sample`},
		{[]string{"verify", "--projection", "nope", "--all"}, cli.ExitUsage, `--projection: "nope" is not one of orders, products`},
		{[]string{"verify", "--projection", "products", "--all", "--since", "yesterday"}, cli.ExitUsage, `--since: "yesterday" is neither an RFC 3339 time`},
		{[]string{"verify", "--projection", "products", "--all", "--since", "-2h"}, cli.ExitUsage, `--since: "-2h" is neither`},
		{[]string{"verify", "--projection", "products", "--all", "--since", "2999-01-01T00:00:00Z"}, cli.ExitUsage, "--since: 2999-01-01T00:00:00Z is in the future"},
		{[]string{"verify", "--projection", "products", "--all", "--since", strings.Repeat("9", 10000)}, cli.ExitUsage, `--since: "` + strings.Repeat("9", 64) + `…" is neither`},
		{[]string{"verify", "--projection", "products", "--aggregate", strings.Repeat("a", 10000)}, cli.ExitUsage, "--aggregate: 10000 bytes, longer than the 512"},
		{[]string{"verify", "--projection", "products", "--aggregate", ""}, cli.ExitUsage, "--aggregate: empty"},
		{[]string{"verify", "--projection", "products", "--aggregate", "a", "--since", "1h"}, cli.ExitUsage, "--since: only with --sample or --all"},
		{[]string{"verify", "--projection", "products", "--all", "now"}, cli.ExitUsage, "unexpected arguments"},
		{[]string{"verify", "--projection", "products", "--all", "--delete-unexpected"}, cli.ExitUsage, "--delete-unexpected: only with --repair"},
		{[]string{"verify", "--projection", "products", "--all", "--page-rows", "0"}, cli.ExitUsage, "--page-rows: 0 not in 1..100000"},
		{[]string{"verify", "--projection", "products", "--all", "--margin", "-1s"}, cli.ExitUsage, "--margin: negative"},
		{[]string{"verify", "--projection", "products", "--all", "--max-diffs", "-1"}, cli.ExitUsage, "--max-diffs: -1 not in 0..10000"},
		{[]string{"verify", "--projection", "products", "--all", "-postgres-url", "postgres://u:pgPassw0rd@db:notaport/x"}, cli.ExitUsage, "POSTGRES_URL: not a valid PostgreSQL URL"},
		{[]string{"run", "-verify-rate", "-1"}, cli.ExitUsage, "VERIFY_RATE: -1 not in 0..10000"},
		{[]string{"run", "-verify-margin", "0s"}, cli.ExitUsage, "VERIFY_MARGIN: must be > 0"},
	} {
		var stdout, stderr bytes.Buffer
		code := program.Run(context.Background(), tc.args, &stdout, &stderr)
		out := stdout.String() + stderr.String()
		if code != tc.code || !strings.Contains(out, tc.want) {
			t.Errorf("projector %v: exit %d, output %q; want exit %d and %q", tc.args, code, out, tc.code, tc.want)
		}
		for _, secret := range []string{"esPassw0rd", "kafkaPassw0rd", "esApiKeyS3cret", "pgPassw0rd"} {
			if strings.Contains(out, secret) {
				t.Errorf("projector %v reveals a secret (%s):\n%s", tc.args, secret, out)
			}
		}
	}
}
