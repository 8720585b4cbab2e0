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
	} {
		var stdout, stderr bytes.Buffer
		code := program.Run(context.Background(), tc.args, &stdout, &stderr)
		out := stdout.String() + stderr.String()
		if code != tc.code || !strings.Contains(out, tc.want) {
			t.Errorf("projector %v: exit %d, output %q; want exit %d and %q", tc.args, code, out, tc.code, tc.want)
		}
		for _, secret := range []string{"esPassw0rd", "kafkaPassw0rd", "esApiKeyS3cret"} {
			if strings.Contains(out, secret) {
				t.Errorf("projector %v reveals a secret (%s):\n%s", tc.args, secret, out)
			}
		}
	}
}
