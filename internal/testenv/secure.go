package testenv

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"cqrsflow/internal/config"
)

// The local stack's secured endpoints (deploy/local): a SASL_SSL listener
// on the broker and TLS on PostgreSQL, both with certificates of the
// stack's CA.

// StackCAFile is the stack CA's certificate (TEST_STACK_CA_FILE, default
// <state dir>/tls/ca.crt).
func StackCAFile() string {
	return env("TEST_STACK_CA_FILE", filepath.Join(config.StateDir(), "tls", "ca.crt"))
}

// KafkaSASLBrokers is the broker's SASL_SSL listener (TEST_KAFKA_SASL_BROKERS).
func KafkaSASLBrokers() []string {
	return config.SplitList(env("TEST_KAFKA_SASL_BROKERS", "127.0.0.1:19094"))
}

// KafkaSASLUser is the SASL user the local stack creates.
const KafkaSASLUser = "cqrsflow"

// KafkaSASLPassword reads the SASL user's password from the stack's state
// dir (TEST_KAFKA_SASL_PASSWORD_FILE, default <state dir>/kafka/sasl-password).
func KafkaSASLPassword(t testing.TB) string {
	t.Helper()
	return readSecret(t, env("TEST_KAFKA_SASL_PASSWORD_FILE", filepath.Join(config.StateDir(), "kafka", "sasl-password")))
}

// PostgresPassword reads the cqrsflow role's password from the stack's
// state dir (TEST_POSTGRES_PASSWORD_FILE, default <state dir>/postgres/password).
func PostgresPassword(t testing.TB) string {
	t.Helper()
	return readSecret(t, env("TEST_POSTGRES_PASSWORD_FILE", filepath.Join(config.StateDir(), "postgres", "password")))
}

func readSecret(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading the local stack's secret: %v\n%s", err, hint)
	}
	s, _, _ := strings.Cut(string(b), "\n")
	if s == "" {
		t.Fatalf("%s is empty\n%s", path, hint)
	}
	return s
}
