package esindex_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"cqrsflow/internal/config"
	"cqrsflow/internal/esindex"
	"cqrsflow/internal/testenv"
)

func TestSettingsValidate(t *testing.T) {
	ca := testenv.NewCA(t)
	notPEM := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(notPEM, []byte("-----BEGIN NOTHING-----"), 0o600); err != nil {
		t.Fatal(err)
	}
	fp := strings.Repeat("ab", 32)
	colons := strings.ToUpper(strings.TrimSuffix(strings.Repeat("AB:", 32), ":"))
	for _, tc := range []struct {
		name string
		s    esindex.Settings
		want []string // nil: valid
	}{
		{"local default", esindex.Settings{URL: "http://127.0.0.1:19200"}, nil},
		{"api key and CA", esindex.Settings{URL: "https://es:9200", APIKey: "k", CAFile: ca.CertFile}, nil},
		{"basic auth and fingerprint as Elasticsearch prints it", esindex.Settings{URL: "https://es:9200", Username: "u", Password: "p", CAFingerprint: colons}, nil},
		{"empty URL", esindex.Settings{}, []string{"ELASTICSEARCH_URL: empty"}},
		{"not a URL", esindex.Settings{URL: "es:9200"}, []string{"ELASTICSEARCH_URL", "not an http:// or https:// URL"}},
		{"both credentials", esindex.Settings{URL: "https://es", APIKey: "k", Username: "u", Password: "p"}, []string{"set one of them"}},
		{"user without password", esindex.Settings{URL: "https://es", Username: "u"}, []string{"ELASTICSEARCH_USERNAME and ELASTICSEARCH_PASSWORD go together"}},
		{"CA over http", esindex.Settings{URL: "http://es", CAFile: ca.CertFile}, []string{"need an https:// ELASTICSEARCH_URL"}},
		{"CA file and fingerprint", esindex.Settings{URL: "https://es", CAFile: ca.CertFile, CAFingerprint: fp}, []string{"ELASTICSEARCH_CA_FILE and ELASTICSEARCH_CA_FINGERPRINT"}},
		{"missing CA file", esindex.Settings{URL: "https://es", CAFile: "/nonexistent/ca.crt"}, []string{"ELASTICSEARCH_CA_FILE", "no such file"}},
		{"CA file without a certificate", esindex.Settings{URL: "https://es", CAFile: notPEM}, []string{"ELASTICSEARCH_CA_FILE", "holds no PEM certificate"}},
		{"short fingerprint", esindex.Settings{URL: "https://es", CAFingerprint: "abcd"}, []string{"ELASTICSEARCH_CA_FINGERPRINT: want the 64 hex digits"}},
		{"fingerprint not hex", esindex.Settings{URL: "https://es", CAFingerprint: strings.Repeat("zz", 32)}, []string{"ELASTICSEARCH_CA_FINGERPRINT"}},
	} {
		err := tc.s.Validate()
		if tc.want == nil {
			if err != nil {
				t.Errorf("%s: %v", tc.name, err)
			}
			continue
		}
		if err == nil {
			t.Errorf("%s: valid, want %q", tc.name, tc.want)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q lacks %q", tc.name, err, w)
			}
		}
		if _, cerr := tc.s.Client(); cerr == nil {
			t.Errorf("%s: Client accepted invalid settings", tc.name)
		}
	}
}

func TestSettingsSecretsHidden(t *testing.T) {
	t.Setenv("ELASTICSEARCH_API_KEY", "esApiKeyHunter2")
	t.Setenv("ELASTICSEARCH_PASSWORD", "esPassHunter2")
	t.Setenv("ELASTICSEARCH_URL", "https://elastic:esUrlHunter2@es:9200")
	s := config.NewSet("t")
	var e esindex.Settings
	e.Register(s)
	if err := s.Parse(nil); err != nil {
		t.Fatal(err)
	}
	if e.APIKey != "esApiKeyHunter2" || e.Password != "esPassHunter2" {
		t.Fatalf("settings not read from the environment: %+v", e)
	}
	var usage strings.Builder
	s.FlagSet().SetOutput(&usage)
	s.FlagSet().PrintDefaults()
	out := fmt.Sprint(s.LogAttrs()...) + usage.String()
	for _, secret := range []string{"esApiKeyHunter2", "esPassHunter2", "esUrlHunter2"} {
		if strings.Contains(out, secret) {
			t.Errorf("log or usage reveals %s:\n%s", secret, out)
		}
	}
	if err := e.Validate(); err == nil || !strings.Contains(err.Error(), "set one of them") {
		t.Errorf("API key with a password: %v", err)
	} else if strings.Contains(err.Error(), "Hunter2") {
		t.Errorf("validation error reveals a secret: %v", err)
	}
}

func TestSettingsWarnings(t *testing.T) {
	if w := (esindex.Settings{URL: "http://es:9200", APIKey: "k"}).Warnings(); len(w) != 1 || !strings.Contains(w[0], "clear text") {
		t.Errorf("API key over http: %q", w)
	}
	if w := (esindex.Settings{URL: "https://es:9200", APIKey: "k"}).Warnings(); len(w) != 0 {
		t.Errorf("API key over https: %q", w)
	}
}

// The client reuses its connections under concurrency and asks for
// uncompressed answers.
func TestClientKeepsConnections(t *testing.T) {
	var dialled atomic.Int64
	var gzipAsked atomic.Bool
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
			gzipAsked.Store(true)
		}
		time.Sleep(5 * time.Millisecond) // keep the requests of a round in flight together
		w.Header().Set("X-Elastic-Product", "Elasticsearch")
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"status":"green"}`))
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			dialled.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	es, err := esindex.Settings{URL: srv.URL}.Client()
	if err != nil {
		t.Fatal(err)
	}
	const inFlight = 16
	for range 5 {
		var wg sync.WaitGroup
		for range inFlight {
			wg.Go(func() {
				if err := esindex.Ping(context.Background(), es); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
	}
	if n := dialled.Load(); n > inFlight {
		t.Errorf("%d connections for 5 rounds of %d concurrent requests: idle connections were not kept", n, inFlight)
	}
	if gzipAsked.Load() {
		t.Error("the client asked for gzip")
	}
}
