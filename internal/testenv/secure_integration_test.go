//go:build integration

package testenv_test

import (
	"context"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kgo"

	"cqrsflow/internal/kafka"
	"cqrsflow/internal/relay"
	"cqrsflow/internal/testenv"
)

// pgURL returns the test database URL with the password and query
// parameters replaced.
func pgURL(t *testing.T, password string, params map[string]string) string {
	t.Helper()
	u, err := url.Parse(testenv.PostgresURL())
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(u.User.Username(), password)
	q := u.Query()
	for k, v := range params {
		q.Set(k, v)
	}
	u.RawQuery = q.Encode()
	return u.String()
}

func pgConnect(t *testing.T, connURL string, edit func(*pgx.ConnConfig)) (bool, error) {
	t.Helper()
	cfg, err := pgx.ParseConfig(connURL)
	if err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		edit(cfg)
	}
	ctx := timeout(t, 15*time.Second)
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return false, err
	}
	defer conn.Close(context.Background())
	var ssl bool
	if err := conn.QueryRow(ctx, "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").Scan(&ssl); err != nil {
		t.Fatal(err)
	}
	return ssl, nil
}

// PostgreSQL (deploy/local/pg.sh): scram-sha-256 with the password of the
// state dir, and TLS that a client verifies with the stack CA; a wrong CA,
// a wrong server name or a wrong password is refused.
func TestStackPostgresVerifiedTLSAndSCRAM(t *testing.T) {
	t.Parallel()
	pw := testenv.PostgresPassword(t)
	verify := map[string]string{"sslmode": "verify-full", "sslrootcert": testenv.StackCAFile()}
	ssl, err := pgConnect(t, pgURL(t, pw, verify), nil)
	if err != nil {
		t.Fatalf("sslmode=verify-full with the stack CA: %v", err)
	}
	if !ssl {
		t.Fatal("verify-full connection is not encrypted (pg_stat_ssl.ssl = false)")
	}
	// The stack CA is the only one trusted: a server certificate signed by
	// it fails against another CA, and one for other names fails too.
	other := testenv.NewCA(t)
	if _, err := pgConnect(t, pgURL(t, pw, map[string]string{"sslmode": "verify-full", "sslrootcert": other.CertFile}), nil); err == nil ||
		!strings.Contains(err.Error(), "certificate") {
		t.Errorf("verify-full with another CA: err %v, want a certificate error", err)
	}
	if _, err := pgConnect(t, pgURL(t, pw, verify), func(c *pgx.ConnConfig) { c.TLSConfig.ServerName = "db.example.invalid" }); err == nil ||
		!strings.Contains(err.Error(), "db.example.invalid") {
		t.Errorf("verify-full with a server name not in the certificate: err %v, want a name mismatch", err)
	}
	// scram-sha-256, not trust: a wrong password is refused over TLS and plain TCP.
	for _, mode := range []string{"verify-full", "disable"} {
		params := map[string]string{"sslmode": mode}
		if mode == "verify-full" {
			params = verify
		}
		if _, err := pgConnect(t, pgURL(t, pw+"-wrong", params), nil); err == nil || !strings.Contains(err.Error(), "password authentication failed") {
			t.Errorf("sslmode=%s with a wrong password: err %v, want password authentication failed", mode, err)
		}
	}
	if ssl, err := pgConnect(t, pgURL(t, pw, map[string]string{"sslmode": "disable"}), nil); err != nil || ssl {
		t.Errorf("sslmode=disable (the binaries' local default): ssl=%v err=%v, want a plain connection", ssl, err)
	}
}

// Kafka (deploy/local/kafka.sh): the SASL_SSL listener takes PLAIN,
// SCRAM-SHA-256 and SCRAM-SHA-512 with the stack CA, through the same
// settings and producer options the binaries use; a wrong password, a
// wrong CA or a plaintext client is refused.
func TestStackKafkaSASLSSL(t *testing.T) {
	t.Parallel()
	topic := testenv.Topic(t, 1)
	pw := testenv.KafkaSASLPassword(t)
	for _, mech := range []string{kafka.MechanismPlain, kafka.MechanismSCRAMSHA256, kafka.MechanismSCRAMSHA512} {
		k := kafka.Settings{Brokers: testenv.KafkaSASLBrokers(), SASLMechanism: mech, SASLUsername: testenv.KafkaSASLUser,
			SASLPassword: pw, TLS: true, TLSCAFile: testenv.StackCAFile()}
		if err := produceConsume(t, k, topic, mech); err != nil {
			t.Errorf("%s over TLS with the stack CA: %v", mech, err)
		}
	}
	other := testenv.NewCA(t)
	good := kafka.Settings{Brokers: testenv.KafkaSASLBrokers(), SASLMechanism: kafka.MechanismSCRAMSHA512, SASLUsername: testenv.KafkaSASLUser,
		SASLPassword: pw, TLS: true, TLSCAFile: testenv.StackCAFile()}
	for name, mutate := range map[string]func(*kafka.Settings){
		"wrong password":     func(k *kafka.Settings) { k.SASLPassword = pw + "x" },
		"PLAIN, wrong user":  func(k *kafka.Settings) { k.SASLMechanism, k.SASLUsername = kafka.MechanismPlain, "nobody" },
		"another CA":         func(k *kafka.Settings) { k.TLSCAFile = other.CertFile },
		"no TLS (plaintext)": func(k *kafka.Settings) { k.TLS, k.TLSCAFile = false, "" },
	} {
		k := good
		mutate(&k)
		if err := ping(t, k); err == nil {
			t.Errorf("%s: connected, want a refusal", name)
		}
	}
}

func ping(t *testing.T, k kafka.Settings) error {
	t.Helper()
	cl, err := k.NewClient(kgo.RequestRetries(0))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	return cl.Ping(timeout(t, 5*time.Second))
}

func produceConsume(t *testing.T, k kafka.Settings, topic, value string) error {
	t.Helper()
	ctx := timeout(t, 30*time.Second)
	prod, err := k.NewClient(relay.ProducerOpts(k.Brokers, 10*time.Second)...)
	if err != nil {
		return err
	}
	defer prod.Close()
	acked := make(chan error, 1)
	prod.Produce(ctx, &kgo.Record{Topic: topic, Key: []byte("k"), Value: []byte(value)}, func(_ *kgo.Record, err error) { acked <- err })
	if err := prod.Flush(ctx); err != nil { // the relay's producers flush manually
		return err
	}
	if err := <-acked; err != nil {
		return err
	}
	cons, err := k.NewClient(kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		return err
	}
	defer cons.Close()
	for ctx.Err() == nil {
		fs := cons.PollFetches(ctx)
		if err := fs.Err0(); err != nil && ctx.Err() == nil {
			return err
		}
		var found bool
		fs.EachRecord(func(r *kgo.Record) { found = found || string(r.Value) == value })
		if found {
			return nil
		}
	}
	return ctx.Err()
}
