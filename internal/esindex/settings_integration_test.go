//go:build integration

package esindex_test

import (
	"context"
	"encoding/base64"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"cqrsflow/internal/esindex"
	"cqrsflow/internal/testenv"
)

// securedProxy stands in for an Elasticsearch 8 node with security on
// (the local node has no security module): TLS with a certificate of a
// fresh CA, and every request must carry the API key or the basic-auth
// credentials, else 401 like Elasticsearch. Accepted requests go to the
// real local node.
type securedProxy struct {
	URL       string
	CA        *testenv.CA
	Cert      *testenv.Issued
	accepted  atomic.Int64
	refused   atomic.Int64
	lastAuthz atomic.Value
}

func newSecuredProxy(t *testing.T, apiKey, user, pass string) *securedProxy {
	t.Helper()
	testenv.Elasticsearch(t) // fails the test with `make up` when the node is down
	target, err := url.Parse(testenv.ElasticsearchURL())
	if err != nil {
		t.Fatal(err)
	}
	p := &securedProxy{CA: testenv.NewCA(t)}
	p.Cert = p.CA.Issue(t, "127.0.0.1", "localhost")
	rp := httputil.NewSingleHostReverseProxy(target)
	wantBasic := base64.StdEncoding.EncodeToString([]byte(user + ":" + pass))
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := r.Header.Get("Authorization")
		p.lastAuthz.Store(got)
		// Authorization schemes are case-insensitive (RFC 9110).
		scheme, cred, _ := strings.Cut(got, " ")
		ok := strings.EqualFold(scheme, "ApiKey") && cred == apiKey || strings.EqualFold(scheme, "Basic") && cred == wantBasic
		if !ok {
			p.refused.Add(1)
			w.Header().Set("WWW-Authenticate", `ApiKey, Basic realm="security"`)
			http.Error(w, `{"error":{"type":"security_exception"},"status":401}`, http.StatusUnauthorized)
			return
		}
		p.accepted.Add(1)
		r.Header.Del("Authorization") // the local node knows no users
		rp.ServeHTTP(w, r)
	}))
	srv.TLS = p.Cert.ServerConfig()
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes are expected
	srv.StartTLS()
	t.Cleanup(srv.Close)
	p.URL = srv.URL
	return p
}

func ping(t *testing.T, s esindex.Settings) error {
	t.Helper()
	es, err := s.Client()
	if err != nil {
		t.Fatalf("settings %+v rejected: %v", s.URL, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return esindex.Ping(ctx, es)
}

// TestSecuredConnection: the client sends the API key or the basic-auth
// credentials, verifies the node's certificate against the CA file or the
// fingerprint, and refuses a node it cannot verify.
func TestSecuredConnection(t *testing.T) {
	const apiKey = "VnVhQ2ZHY0JDZGJrUW0tZTVhT3g6dWkybHAyYXhUTm1zeWFrdzl0dk5udw=="
	p := newSecuredProxy(t, apiKey, "cqrsflow", "es-s3cret")
	otherCA := testenv.NewCA(t)
	other := otherCA.Issue(t, "127.0.0.1")

	// Works: API key + CA file, basic auth + fingerprint (both spellings).
	// In this order: the last one sends basic auth (checked below).
	for _, c := range []struct {
		name string
		s    esindex.Settings
	}{
		{"api key and CA file", esindex.Settings{URL: p.URL, APIKey: apiKey, CAFile: p.CA.CertFile}},
		{"basic auth and CA file", esindex.Settings{URL: p.URL, Username: "cqrsflow", Password: "es-s3cret", CAFile: p.CA.CertFile}},
		{"api key and fingerprint", esindex.Settings{URL: p.URL, APIKey: apiKey, CAFingerprint: p.Cert.Fingerprint}},
		{"basic auth and upper-case fingerprint", esindex.Settings{URL: p.URL, Username: "cqrsflow", Password: "es-s3cret", CAFingerprint: colonHex(p.Cert.Fingerprint)}},
	} {
		name, s := c.name, c.s
		before := p.accepted.Load()
		if err := ping(t, s); err != nil {
			t.Errorf("%s: %v", name, err)
		} else if p.accepted.Load() == before {
			t.Errorf("%s: ping succeeded without passing the proxy", name)
		}
		// Checked per case: the map's order is random.
		want := "ApiKey "
		if s.Username != "" {
			want = "Basic "
		}
		if got, _ := p.lastAuthz.Load().(string); !strings.HasPrefix(strings.ToLower(got), strings.ToLower(want)) {
			t.Errorf("%s: Authorization header %q, want %s…", name, got, want)
		}
	}

	// Refused by the client: the node's certificate does not verify.
	for name, s := range map[string]esindex.Settings{
		"other CA":          {URL: p.URL, APIKey: apiKey, CAFile: otherCA.CertFile},
		"system roots only": {URL: p.URL, APIKey: apiKey},
		"other fingerprint": {URL: p.URL, APIKey: apiKey, CAFingerprint: other.Fingerprint},
	} {
		before := p.accepted.Load() + p.refused.Load()
		err := ping(t, s)
		if err == nil {
			t.Errorf("%s: connected to a node it cannot verify", name)
			continue
		}
		if !errors.Is(err, esindex.ErrUnavailable) {
			t.Errorf("%s: %v, want ErrUnavailable", name, err)
		}
		if n := p.accepted.Load() + p.refused.Load(); n != before {
			t.Errorf("%s: %d requests reached the proxy: credentials were sent before the certificate was verified", name, n-before)
		}
	}

	// Refused by the node: wrong or no credentials → 401, not retried as unavailable.
	for name, s := range map[string]esindex.Settings{
		"wrong api key":  {URL: p.URL, APIKey: "d3Jvbmc6a2V5", CAFile: p.CA.CertFile},
		"wrong password": {URL: p.URL, Username: "cqrsflow", Password: "nope", CAFile: p.CA.CertFile},
		"no credentials": {URL: p.URL, CAFile: p.CA.CertFile},
	} {
		before := p.refused.Load()
		err := ping(t, s)
		if err == nil || !strings.Contains(err.Error(), "401") {
			t.Errorf("%s: %v, want a 401", name, err)
		}
		if errors.Is(err, esindex.ErrUnavailable) {
			t.Errorf("%s: a 401 is ErrUnavailable (retried forever): %v", name, err)
		}
		if p.refused.Load() == before {
			t.Errorf("%s: the proxy refused nothing", name)
		}
		if strings.Contains(err.Error(), "es-s3cret") || strings.Contains(err.Error(), apiKey) {
			t.Errorf("%s: the error reveals a secret: %v", name, err)
		}
	}
}

// colonHex writes a hex fingerprint as Elasticsearch prints it: AB:CD:…
func colonHex(h string) string {
	var parts []string
	for i := 0; i < len(h); i += 2 {
		parts = append(parts, strings.ToUpper(h[i:i+2]))
	}
	return strings.Join(parts, ":")
}
