package kafka

import (
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"cqrsflow/internal/config"
	"cqrsflow/internal/testenv"
)

func TestRegisterReadsEnvAndHidesThePassword(t *testing.T) {
	t.Setenv("KAFKA_BROKERS", "b1:9093, b2:9093")
	t.Setenv("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
	t.Setenv("KAFKA_SASL_USERNAME", "relay")
	t.Setenv("KAFKA_SASL_PASSWORD", "kafkaHunter2")
	t.Setenv("KAFKA_TLS", "true")
	t.Setenv("KAFKA_TLS_SERVER_NAME", "kafka.internal")
	s := config.NewSet("t")
	var k Settings
	k.Register(s)
	if err := s.Parse(nil); err != nil {
		t.Fatal(err)
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	if strings.Join(k.Brokers, ",") != "b1:9093,b2:9093" || k.SASLMechanism != MechanismSCRAMSHA512 || k.SASLUsername != "relay" ||
		k.SASLPassword != "kafkaHunter2" || !k.TLS || k.TLSServerName != "kafka.internal" {
		t.Fatalf("settings: %+v", k)
	}
	logged := fmt.Sprint(s.LogAttrs()...)
	var usage strings.Builder
	s.FlagSet().SetOutput(&usage)
	s.FlagSet().PrintDefaults()
	for what, out := range map[string]string{"start-up log": logged, "usage": usage.String()} {
		if strings.Contains(out, "kafkaHunter2") {
			t.Errorf("%s reveals the SASL password: %s", what, out)
		}
	}
	if !strings.Contains(logged, "kafka_sasl_password=(set, hidden)") {
		t.Errorf("start-up log does not say the password is set: %s", logged)
	}
}

func TestValidateNamesEverySetting(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "ca.txt")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	ca := testenv.NewCA(t)
	for _, tc := range []struct {
		name string
		k    Settings
		want []string // every string must be in the error; nil: valid
	}{
		{"defaults", Settings{Brokers: []string{"127.0.0.1:19092"}}, nil},
		{"scram over tls with a CA", Settings{Brokers: []string{"k:9093"}, SASLMechanism: "scram-sha-256", SASLUsername: "u", SASLPassword: "p", TLS: true, TLSCAFile: ca.CertFile}, nil},
		{"no brokers", Settings{}, []string{"KAFKA_BROKERS: empty"}},
		{"broker without port", Settings{Brokers: []string{"kafka"}}, []string{`KAFKA_BROKERS: "kafka" is not host:port`}},
		{"unknown mechanism", Settings{Brokers: []string{"k:1"}, SASLMechanism: "GSSAPI", SASLUsername: "u", SASLPassword: "p"}, []string{`KAFKA_SASL_MECHANISM: "GSSAPI" is not one of`}},
		{"mechanism without password", Settings{Brokers: []string{"k:1"}, SASLMechanism: "PLAIN", SASLUsername: "u"}, []string{"needs KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"}},
		{"credentials without mechanism", Settings{Brokers: []string{"k:1"}, SASLUsername: "u", SASLPassword: "p"}, []string{"KAFKA_SASL_MECHANISM is empty"}},
		{"CA without TLS", Settings{Brokers: []string{"k:1"}, TLSCAFile: ca.CertFile}, []string{"set KAFKA_TLS=true"}},
		{"cert without key", Settings{Brokers: []string{"k:1"}, TLS: true, TLSCertFile: ca.CertFile}, []string{"KAFKA_TLS_CERT_FILE and KAFKA_TLS_KEY_FILE go together"}},
		{"missing CA file", Settings{Brokers: []string{"k:1"}, TLS: true, TLSCAFile: filepath.Join(dir, "nope.crt")}, []string{"KAFKA_TLS_CA_FILE", "no such file"}},
		{"CA file that is not PEM", Settings{Brokers: []string{"k:1"}, TLS: true, TLSCAFile: notPEM}, []string{"KAFKA_TLS_CA_FILE", "holds no PEM certificate"}},
		{"key that does not match", Settings{Brokers: []string{"k:1"}, TLS: true, TLSCertFile: ca.CertFile, TLSKeyFile: notPEM}, []string{"KAFKA_TLS_CERT_FILE/KAFKA_TLS_KEY_FILE"}},
	} {
		err := tc.k.Validate()
		if tc.want == nil {
			if err != nil {
				t.Errorf("%s: %v", tc.name, err)
			}
			continue
		}
		if err == nil {
			t.Errorf("%s: no error, want %q", tc.name, tc.want)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q lacks %q", tc.name, err, w)
			}
		}
		if _, oerr := tc.k.Opts(); oerr == nil {
			t.Errorf("%s: Opts accepted invalid settings", tc.name)
		}
	}
}

func TestWarnings(t *testing.T) {
	if w := (Settings{SASLMechanism: "PLAIN"}).Warnings(); len(w) != 1 || !strings.Contains(w[0], "clear text") {
		t.Errorf("PLAIN without TLS: warnings %q", w)
	}
	if w := (Settings{SASLMechanism: "SCRAM-SHA-256"}).Warnings(); len(w) != 1 || !strings.Contains(w[0], "not encrypted") {
		t.Errorf("SCRAM without TLS: warnings %q", w)
	}
	if w := (Settings{SASLMechanism: "PLAIN", TLS: true}).Warnings(); len(w) != 0 {
		t.Errorf("PLAIN over TLS: warnings %q", w)
	}
}

// secureCluster is a kfake cluster that accepts only TLS connections with
// a certificate signed by a fresh CA and SASL user "cqrsflow".
func secureCluster(t *testing.T, mechanism, password string) (*kfake.Cluster, *testenv.CA) {
	t.Helper()
	ca := testenv.NewCA(t)
	srv := ca.Issue(t, "127.0.0.1", "localhost")
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.TLS(srv.ServerConfig()),
		kfake.EnableSASL(), kfake.Superuser(mechanism, "cqrsflow", password), kfake.SeedTopics(1, "t"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c, ca
}

func produceOne(k Settings) error {
	cl, err := k.NewClient(kgo.DefaultProduceTopic("t"), kgo.RequestRetries(0))
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := cl.Ping(ctx); err != nil {
		return err
	}
	return cl.ProduceSync(ctx, &kgo.Record{Value: []byte("v")}).FirstErr()
}

// TestSecureConnections: each mechanism over TLS with the CA file works;
// a wrong password, a wrong CA, a wrong server name or no TLS at all fail.
func TestSecureConnections(t *testing.T) {
	for _, mech := range []string{MechanismPlain, MechanismSCRAMSHA256, MechanismSCRAMSHA512} {
		t.Run(mech, func(t *testing.T) {
			c, ca := secureCluster(t, mech, "s3cret-"+mech)
			good := Settings{Brokers: c.ListenAddrs(), SASLMechanism: mech, SASLUsername: "cqrsflow", SASLPassword: "s3cret-" + mech,
				TLS: true, TLSCAFile: ca.CertFile}
			if err := produceOne(good); err != nil {
				t.Fatalf("right credentials and CA: %v", err)
			}
			otherCA := testenv.NewCA(t)
			for name, mutate := range map[string]func(*Settings){
				"wrong password":    func(k *Settings) { k.SASLPassword = "wrong" },
				"other user":        func(k *Settings) { k.SASLUsername = "someone" },
				"wrong CA":          func(k *Settings) { k.TLSCAFile = otherCA.CertFile },
				"wrong server name": func(k *Settings) { k.TLSServerName = "not-the-broker.example" },
				"no TLS":            func(k *Settings) { k.TLS, k.TLSCAFile = false, "" },
				"no SASL":           func(k *Settings) { k.SASLMechanism, k.SASLUsername, k.SASLPassword = "", "", "" },
			} {
				k := good
				mutate(&k)
				if err := produceOne(k); err == nil {
					t.Errorf("%s: connected, want a failure", name)
				}
			}
		})
	}
}

// TestClientCertificate: the client certificate is presented when the
// broker asks for one.
func TestClientCertificate(t *testing.T) {
	ca := testenv.NewCA(t)
	srv := ca.Issue(t, "127.0.0.1")
	cfg := srv.ServerConfig()
	cfg.ClientAuth = tls.RequireAndVerifyClientCert
	cfg.ClientCAs = ca.Pool()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.TLS(cfg), kfake.SeedTopics(1, "t"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	client := ca.Issue(t, "relay")
	k := Settings{Brokers: c.ListenAddrs(), TLS: true, TLSCAFile: ca.CertFile}
	if err := produceOne(k); err == nil {
		t.Fatal("without a client certificate: connected, want a failure")
	}
	k.TLSCertFile, k.TLSKeyFile = client.CertFile, client.KeyFile
	if err := produceOne(k); err != nil {
		t.Fatalf("with the client certificate: %v", err)
	}
}
