package esindex

import (
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"

	"github.com/elastic/go-elasticsearch/v8"

	"cqrsflow/internal/config"
)

// Settings are the connection settings of the Elasticsearch client.
// Elasticsearch 8 enables security by default: TLS on the HTTP port and
// API keys or basic auth; the local stack's node runs without it.
type Settings struct {
	URL      string
	APIKey   string // secret: the base64 "id:key" of an API key
	Username string
	Password string // secret
	// CAFile is a PEM file of the CAs that sign the node's certificate
	// (replaces the system roots); CAFingerprint instead pins the SHA-256
	// of one certificate of the node's chain, as Elasticsearch prints at
	// its first start.
	CAFile        string
	CAFingerprint string
}

// Register registers ELASTICSEARCH_URL and the ELASTICSEARCH_* credential
// and TLS settings with their defaults (the local stack's node).
func (e *Settings) Register(s *config.Set) {
	s.URL(&e.URL, "ELASTICSEARCH_URL", config.DefaultElasticsearchURL, "Elasticsearch URL (https:// for TLS)")
	s.Secret(&e.APIKey, "ELASTICSEARCH_API_KEY", "Elasticsearch API key (the base64 encoded id:key), sent as Authorization: ApiKey")
	s.String(&e.Username, "ELASTICSEARCH_USERNAME", "", "Elasticsearch basic-auth user (with ELASTICSEARCH_PASSWORD)")
	s.Secret(&e.Password, "ELASTICSEARCH_PASSWORD", "Elasticsearch basic-auth password")
	s.String(&e.CAFile, "ELASTICSEARCH_CA_FILE", "", "PEM file of the CAs that sign the node's HTTP certificate (default: the system roots)")
	s.String(&e.CAFingerprint, "ELASTICSEARCH_CA_FINGERPRINT", "", "SHA-256 fingerprint (hex) of a certificate of the node's chain, instead of a CA file")
}

// fingerprint returns the fingerprint as bare lower-case hex: the form
// Elasticsearch prints (colon-separated, upper case) is accepted too.
func (e Settings) fingerprint() string {
	return strings.ToLower(strings.ReplaceAll(strings.TrimSpace(e.CAFingerprint), ":", ""))
}

// Validate reports every problem at once, each naming its setting.
func (e Settings) Validate() error {
	var errs []error
	u, err := url.Parse(e.URL)
	switch {
	case e.URL == "":
		errs = append(errs, errors.New("ELASTICSEARCH_URL: empty"))
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		errs = append(errs, fmt.Errorf("ELASTICSEARCH_URL: %q is not an http:// or https:// URL", config.MaskURL(e.URL)))
	}
	if e.APIKey != "" && (e.Username != "" || e.Password != "") {
		errs = append(errs, errors.New("ELASTICSEARCH_API_KEY and ELASTICSEARCH_USERNAME/PASSWORD: set one of them"))
	}
	if (e.Username == "") != (e.Password == "") {
		errs = append(errs, errors.New("ELASTICSEARCH_USERNAME and ELASTICSEARCH_PASSWORD go together"))
	}
	if e.CAFile != "" && e.CAFingerprint != "" {
		errs = append(errs, errors.New("ELASTICSEARCH_CA_FILE and ELASTICSEARCH_CA_FINGERPRINT: set one of them"))
	}
	if (e.CAFile != "" || e.CAFingerprint != "") && u != nil && u.Scheme == "http" {
		errs = append(errs, errors.New("ELASTICSEARCH_CA_FILE/ELASTICSEARCH_CA_FINGERPRINT need an https:// ELASTICSEARCH_URL"))
	}
	if e.CAFile != "" {
		if _, _, err := config.ReadCAFile("ELASTICSEARCH_CA_FILE", e.CAFile); err != nil {
			errs = append(errs, err)
		}
	}
	if fp := e.fingerprint(); fp != "" {
		if b, err := hex.DecodeString(fp); err != nil || len(b) != 32 {
			errs = append(errs, errors.New("ELASTICSEARCH_CA_FINGERPRINT: want the 64 hex digits of a SHA-256 fingerprint"))
		}
	}
	return errors.Join(errs...)
}

// Warnings are the settings that work but should not be used in
// production, for the start-up log.
func (e Settings) Warnings() []string {
	if strings.HasPrefix(e.URL, "http://") && (e.APIKey != "" || e.Password != "") {
		return []string{"Elasticsearch credentials over http:// travel in clear text: use https://"}
	}
	return nil
}

// LogWarnings logs Warnings at Warn level.
func (e Settings) LogWarnings(log *slog.Logger) {
	for _, w := range e.Warnings() {
		log.Warn("elasticsearch connection: " + w)
	}
}

// MaxIdleConns is how many idle connections to the node a client keeps
// for reuse.
const MaxIdleConns = 256

// transport is the client's HTTP transport: Go's default, but keeping up
// to MaxIdleConns idle connections per host instead of two, so a client
// with many requests in flight (the api's reads) reuses its connections
// instead of dialling a new one for most requests — a connect, a close and
// a TIME_WAIT socket, paid by the node as much as by the client. Answers
// are not compressed: Elasticsearch gzips them when asked, which costs the
// node and the client CPU to save bandwidth a cluster's own network has.
func transport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = MaxIdleConns
	t.MaxIdleConnsPerHost = MaxIdleConns
	t.DisableCompression = true
	return t
}

// Client returns a client connected with the settings.
func (e Settings) Client() (*elasticsearch.Client, error) {
	if err := e.Validate(); err != nil {
		return nil, err
	}
	cfg := elasticsearch.Config{
		Addresses:              []string{e.URL},
		Transport:              transport(),
		MaxRetries:             1,
		APIKey:                 e.APIKey,
		Username:               e.Username,
		Password:               e.Password,
		CertificateFingerprint: e.fingerprint(),
	}
	if e.CAFile != "" {
		pem, _, err := config.ReadCAFile("ELASTICSEARCH_CA_FILE", e.CAFile)
		if err != nil {
			return nil, err
		}
		cfg.CACert = pem
	}
	es, err := elasticsearch.NewClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("elasticsearch client: %w", err)
	}
	return es, nil
}
