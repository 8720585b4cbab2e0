// Package kafka holds the connection settings every cqrsflow Kafka client
// shares: bootstrap brokers, SASL (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512)
// and TLS with a CA file and an optional client certificate. The binaries
// register them once (Settings.Register) and build their franz-go clients
// from Settings.Opts, so the relay's producer, the projector's consumer
// and DLQ producer and the admin clients connect the same way.
package kafka

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"cqrsflow/internal/config"
)

// SASL mechanisms accepted in KAFKA_SASL_MECHANISM.
const (
	MechanismPlain       = "PLAIN"
	MechanismSCRAMSHA256 = "SCRAM-SHA-256"
	MechanismSCRAMSHA512 = "SCRAM-SHA-512"
)

// Settings are the connection settings of a Kafka client.
type Settings struct {
	Brokers []string
	// SASLMechanism is empty (no SASL) or one of the Mechanism* constants.
	SASLMechanism string
	SASLUsername  string
	SASLPassword  string // secret: never shown
	// TLS turns TLS on; CAFile replaces the system roots when set.
	TLS           bool
	TLSCAFile     string
	TLSCertFile   string
	TLSKeyFile    string
	TLSServerName string
}

// Register registers the settings (KAFKA_BROKERS, KAFKA_SASL_*, KAFKA_TLS*)
// with their defaults: the local stack's plaintext broker.
func (k *Settings) Register(s *config.Set) {
	s.List(&k.Brokers, "KAFKA_BROKERS", config.DefaultKafkaBrokers, "Kafka bootstrap brokers, comma-separated")
	s.String(&k.SASLMechanism, "KAFKA_SASL_MECHANISM", "", "SASL mechanism: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (empty: no SASL)")
	s.String(&k.SASLUsername, "KAFKA_SASL_USERNAME", "", "SASL user name")
	s.Secret(&k.SASLPassword, "KAFKA_SASL_PASSWORD", "SASL password")
	s.Bool(&k.TLS, "KAFKA_TLS", false, "connect to the brokers with TLS")
	s.String(&k.TLSCAFile, "KAFKA_TLS_CA_FILE", "", "PEM file of the CAs that sign the brokers' certificates (default: the system roots)")
	s.String(&k.TLSCertFile, "KAFKA_TLS_CERT_FILE", "", "PEM client certificate for mutual TLS (with KAFKA_TLS_KEY_FILE)")
	s.String(&k.TLSKeyFile, "KAFKA_TLS_KEY_FILE", "", "PEM private key of KAFKA_TLS_CERT_FILE")
	s.String(&k.TLSServerName, "KAFKA_TLS_SERVER_NAME", "", "name the brokers' certificates are checked against (default: each broker's host)")
}

// Validate reports every problem at once, each naming its setting. It
// reads the CA and client certificate files, so a wrong path fails at
// start-up rather than at the first handshake.
func (k Settings) Validate() error {
	_, err := k.tlsConfig()
	return errors.Join(k.validateFields(), err)
}

func (k Settings) validateFields() error {
	var errs []error
	if len(k.Brokers) == 0 {
		errs = append(errs, errors.New("KAFKA_BROKERS: empty"))
	}
	for _, b := range k.Brokers {
		if _, _, err := net.SplitHostPort(b); err != nil {
			errs = append(errs, fmt.Errorf("KAFKA_BROKERS: %q is not host:port", b))
		}
	}
	switch strings.ToUpper(k.SASLMechanism) {
	case "":
		if k.SASLUsername != "" || k.SASLPassword != "" {
			errs = append(errs, errors.New("KAFKA_SASL_USERNAME/KAFKA_SASL_PASSWORD are set but KAFKA_SASL_MECHANISM is empty"))
		}
	case MechanismPlain, MechanismSCRAMSHA256, MechanismSCRAMSHA512:
		if k.SASLUsername == "" || k.SASLPassword == "" {
			errs = append(errs, fmt.Errorf("KAFKA_SASL_MECHANISM %s needs KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD", k.SASLMechanism))
		}
	default:
		errs = append(errs, fmt.Errorf("KAFKA_SASL_MECHANISM: %q is not one of %s, %s, %s",
			k.SASLMechanism, MechanismPlain, MechanismSCRAMSHA256, MechanismSCRAMSHA512))
	}
	if !k.TLS && (k.TLSCAFile != "" || k.TLSCertFile != "" || k.TLSKeyFile != "" || k.TLSServerName != "") {
		errs = append(errs, errors.New("KAFKA_TLS_CA_FILE/CERT_FILE/KEY_FILE/SERVER_NAME are set but KAFKA_TLS is false: set KAFKA_TLS=true"))
	}
	if (k.TLSCertFile == "") != (k.TLSKeyFile == "") {
		errs = append(errs, errors.New("KAFKA_TLS_CERT_FILE and KAFKA_TLS_KEY_FILE go together"))
	}
	return errors.Join(errs...)
}

// Warnings are the settings that work but should not be used in
// production, for the start-up log.
func (k Settings) Warnings() []string {
	if k.SASLMechanism != "" && !k.TLS {
		if strings.EqualFold(k.SASLMechanism, MechanismPlain) {
			return []string{"KAFKA_SASL_MECHANISM=PLAIN without KAFKA_TLS sends the password in clear text"}
		}
		return []string{"SASL without KAFKA_TLS: the traffic (and the records) are not encrypted"}
	}
	return nil
}

// LogWarnings logs Warnings at Warn level.
func (k Settings) LogWarnings(log *slog.Logger) {
	for _, w := range k.Warnings() {
		log.Warn("kafka connection: " + w)
	}
}

func (k Settings) tlsConfig() (*tls.Config, error) {
	if !k.TLS {
		return nil, nil
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: k.TLSServerName}
	var errs []error
	if k.TLSCAFile != "" {
		_, pool, err := config.ReadCAFile("KAFKA_TLS_CA_FILE", k.TLSCAFile)
		errs = append(errs, err)
		c.RootCAs = pool
	}
	if k.TLSCertFile != "" && k.TLSKeyFile != "" {
		cert, err := config.LoadKeyPair("KAFKA_TLS_CERT_FILE", k.TLSCertFile, "KAFKA_TLS_KEY_FILE", k.TLSKeyFile)
		errs = append(errs, err)
		c.Certificates = []tls.Certificate{cert}
	}
	return c, errors.Join(errs...)
}

func (k Settings) mechanism() sasl.Mechanism {
	switch strings.ToUpper(k.SASLMechanism) {
	case MechanismPlain:
		return plain.Auth{User: k.SASLUsername, Pass: k.SASLPassword}.AsMechanism()
	case MechanismSCRAMSHA256:
		return scram.Auth{User: k.SASLUsername, Pass: k.SASLPassword}.AsSha256Mechanism()
	case MechanismSCRAMSHA512:
		return scram.Auth{User: k.SASLUsername, Pass: k.SASLPassword}.AsSha512Mechanism()
	}
	return nil
}

// dialTimeout bounds a TCP connect plus TLS handshake to a broker.
const dialTimeout = 10 * time.Second

// Opts returns the franz-go options that connect to the brokers: seed
// brokers, the TLS dialer and the SASL mechanism. Callers append their
// own options (consumer group, acks, …).
func (k Settings) Opts() ([]kgo.Opt, error) {
	if err := k.Validate(); err != nil {
		return nil, err
	}
	opts := []kgo.Opt{kgo.SeedBrokers(k.Brokers...)}
	tc, _ := k.tlsConfig() // checked by Validate
	if tc != nil {
		opts = append(opts, kgo.Dialer((&tls.Dialer{NetDialer: &net.Dialer{Timeout: dialTimeout}, Config: tc}).DialContext))
	}
	if m := k.mechanism(); m != nil {
		opts = append(opts, kgo.SASL(m))
	}
	return opts, nil
}

// NewClient returns a franz-go client connected with the settings plus
// extra options.
func (k Settings) NewClient(extra ...kgo.Opt) (*kgo.Client, error) {
	opts, err := k.Opts()
	if err != nil {
		return nil, err
	}
	cl, err := kgo.NewClient(append(opts, extra...)...)
	if err != nil {
		return nil, fmt.Errorf("kafka client: %w", err)
	}
	return cl, nil
}
