package auth

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

const (
	testIssuer   = "https://id.example.test/realms/shop"
	testAudience = "cqrsflow-api"
)

// TestSigner holds key pairs and mints tokens for tests.
type testSigner struct {
	rsa  *rsa.PrivateKey
	ec   *ecdsa.PrivateKey
	kids map[any]string
}

var (
	signerOnce sync.Once
	signer     *testSigner
	otherRSA   *rsa.PrivateKey
)

func newSigner(t testing.TB) *testSigner {
	t.Helper()
	signerOnce.Do(func() {
		r, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		e, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			panic(err)
		}
		if otherRSA, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
		signer = &testSigner{rsa: r, ec: e, kids: map[any]string{r: "rsa-1", e: "ec-1"}}
	})
	return signer
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func rsaJWK(kid string, pub *rsa.PublicKey, use string) map[string]any {
	return map[string]any{"kty": "RSA", "kid": kid, "use": use, "alg": "RS256",
		"n": b64(pub.N.Bytes()), "e": b64(big.NewInt(int64(pub.E)).Bytes())}
}

func ecJWK(kid string, pub *ecdsa.PublicKey) map[string]any {
	raw, err := pub.ECDH()
	if err != nil {
		panic(err)
	}
	b := raw.Bytes() // 0x04 || X || Y
	return map[string]any{"kty": "EC", "kid": kid, "use": "sig", "alg": "ES256", "crv": "P-256",
		"x": b64(b[1:33]), "y": b64(b[33:65])}
}

func (s *testSigner) jwks(extra ...map[string]any) []byte {
	keys := []map[string]any{rsaJWK("rsa-1", &s.rsa.PublicKey, "sig"), ecJWK("ec-1", &s.ec.PublicKey)}
	b, _ := json.Marshal(map[string]any{"keys": append(keys, extra...)})
	return b
}

// claimsFor returns valid claims for user; tests change what they test.
func claimsFor(user, scope string) jwt.MapClaims {
	now := time.Now()
	c := jwt.MapClaims{"iss": testIssuer, "aud": testAudience, "sub": user,
		"iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix()}
	if scope != "" {
		c["scope"] = scope
	}
	return c
}

func sign(t testing.TB, method jwt.SigningMethod, kid string, key any, c jwt.Claims) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, c)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (s *testSigner) rs256(t testing.TB, c jwt.Claims) string {
	return sign(t, jwt.SigningMethodRS256, "rsa-1", s.rsa, c)
}

func fileVerifier(t *testing.T, prefix string, jwks []byte) *Verifier {
	t.Helper()
	file := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(file, jwks, 0o600); err != nil {
		t.Fatal(err)
	}
	v, err := NewVerifier(t.Context(), OIDC{Issuer: testIssuer, Audience: testAudience, JWKSFile: file, ScopePrefix: prefix},
		slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestVerifierAcceptsValidTokens(t *testing.T) {
	s := newSigner(t)
	v := fileVerifier(t, "", s.jwks())
	p, err := v.Verify(t.Context(), s.rs256(t, claimsFor("user-1", "openid read write")))
	if err != nil || p.ID != "oidc:user-1" || p.Scopes != Read|Write || !slices.Equal(p.ActsFor(), []string{"user-1"}) || !p.Token {
		t.Fatalf("RS256: %v %v", p, err)
	}
	c := claimsFor("staff-7", "")
	c["scp"] = []string{"read", "admin"}
	p, err = v.Verify(t.Context(), sign(t, jwt.SigningMethodES256, "ec-1", s.ec, c))
	if err != nil || !p.Scopes.Has(Admin) || p.Bound() || !p.MayActFor("anyone") {
		t.Fatalf("ES256 admin: %v %v", p, err)
	}
	// Within the leeway, an expired token still passes.
	c = claimsFor("user-1", "read")
	c["exp"] = time.Now().Add(-10 * time.Second).Unix()
	if _, err := v.Verify(t.Context(), s.rs256(t, c)); err != nil {
		t.Errorf("expired 10s ago (leeway 30s): %v", err)
	}
	// No scope: authenticated, but grants nothing (routes answer 403).
	if p, err := v.Verify(t.Context(), s.rs256(t, claimsFor("user-2", ""))); err != nil || p.Scopes != 0 {
		t.Errorf("no scope: %v %v", p, err)
	}
	// With a prefix only prefixed scopes count.
	pv := fileVerifier(t, "cqrsflow:", s.jwks())
	if p, err := pv.Verify(t.Context(), s.rs256(t, claimsFor("u", "read cqrsflow:write"))); err != nil || p.Scopes != Write {
		t.Errorf("prefixed scopes: %v %v", p, err)
	}
}

func TestVerifierRefusesBadTokens(t *testing.T) {
	s := newSigner(t)
	hostileJWKS := s.jwks(rsaJWK("enc-1", &otherRSA.PublicKey, "enc"))
	v := fileVerifier(t, "", hostileJWKS)
	with := func(k string, val any) jwt.MapClaims {
		c := claimsFor("user-1", "read write")
		if val == nil {
			delete(c, k)
		} else {
			c[k] = val
		}
		return c
	}
	pubDER, err := x509.MarshalPKIXPublicKey(&s.rsa.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	noneTok := sign(t, jwt.SigningMethodNone, "rsa-1", jwt.UnsafeAllowNoneSignatureType, claimsFor("user-1", "admin"))
	for _, tc := range []struct {
		name, token, reason string
	}{
		{"expired", s.rs256(t, with("exp", time.Now().Add(-time.Hour).Unix())), "token expired"},
		{"no exp", s.rs256(t, with("exp", nil)), "required claim"},
		{"not yet valid", s.rs256(t, with("nbf", time.Now().Add(time.Hour).Unix())), "not valid yet"},
		{"issued in the future", s.rs256(t, with("iat", time.Now().Add(time.Hour).Unix())), "not valid yet"},
		{"wrong issuer", s.rs256(t, with("iss", "https://evil.example")), "another issuer"},
		{"no issuer", s.rs256(t, with("iss", nil)), "required claim"},
		{"wrong audience", s.rs256(t, with("aud", "other-api")), "another audience"},
		{"no audience", s.rs256(t, with("aud", nil)), "required claim"},
		{"wrong key", sign(t, jwt.SigningMethodRS256, "rsa-1", otherRSA, claimsFor("user-1", "read")), "signature"},
		{"unknown kid", sign(t, jwt.SigningMethodRS256, "nope", s.rsa, claimsFor("user-1", "read")), "signature"},
		{"encryption key", sign(t, jwt.SigningMethodRS256, "enc-1", otherRSA, claimsFor("user-1", "read")), "signature"},
		{"alg none", noneTok, "signature"},
		{"alg none, no signature", strings.TrimSuffix(noneTok, "."), "malformed"},
		{"HS256 with the public key", sign(t, jwt.SigningMethodHS256, "rsa-1", pubPEM, claimsFor("user-1", "admin")), "signature"},
		{"HS256 with the modulus", sign(t, jwt.SigningMethodHS256, "rsa-1", s.rsa.N.Bytes(), claimsFor("user-1", "admin")), "signature"},
		{"RS512 (not allowed)", sign(t, jwt.SigningMethodRS512, "rsa-1", s.rsa, claimsFor("user-1", "read")), "signature"},
		{"no sub", s.rs256(t, with("sub", nil)), "sub claim"},
		{"long sub", s.rs256(t, with("sub", strings.Repeat("u", 101))), "sub claim"},
		{"control char in sub", s.rs256(t, with("sub", "u\x00")), "sub claim"},
		{"scope of the wrong type", s.rs256(t, with("scope", 7)), "malformed"},
		{"garbage", "a.b.c", "malformed"},
		{"tampered payload", tamper(s.rs256(t, claimsFor("user-1", "read"))), "signature"},
	} {
		p, err := v.Verify(t.Context(), tc.token)
		var te *TokenError
		if err == nil || !asTokenError(err, &te) || !strings.Contains(te.Reason, tc.reason) {
			t.Errorf("%s: principal %v, err %v; want a TokenError saying %q", tc.name, p, err, tc.reason)
		}
	}
}

func asTokenError(err error, te **TokenError) bool {
	e, ok := err.(*TokenError)
	*te = e
	return ok
}

// tamper swaps the payload for one claiming admin, keeping the signature.
func tamper(tok string) string {
	parts := strings.Split(tok, ".")
	c := claimsFor("user-1", "admin")
	b, _ := json.Marshal(c)
	return parts[0] + "." + b64(b) + "." + parts[2]
}

func TestOIDCValidate(t *testing.T) {
	if err := (OIDC{}).Validate(); err != nil {
		t.Errorf("disabled: %v", err)
	}
	err := OIDC{Issuer: testIssuer}.Validate()
	for _, want := range []string{"OIDC_AUDIENCE", "OIDC_JWKS_URL"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("issuer only: %v lacks %s", err, want)
		}
	}
	for u, ok := range map[string]bool{
		"https://id.example/jwks": true, "http://127.0.0.1:9/jwks": true, "http://localhost/jwks": true,
		"http://id.example/jwks": false, "ftp://id.example/jwks": false, "/jwks": false,
	} {
		err := OIDC{Issuer: testIssuer, Audience: testAudience, JWKSURL: u}.Validate()
		if (err == nil) != ok {
			t.Errorf("JWKS URL %s: %v", u, err)
		}
	}
	if err := (OIDC{Issuer: testIssuer, Audience: testAudience, JWKSURL: "https://x/j", JWKSFile: "/f"}).Validate(); err == nil {
		t.Error("both JWKS sources accepted")
	}
}

func TestJWKSFileErrors(t *testing.T) {
	dir := t.TempDir()
	for name, content := range map[string]string{"empty": `{"keys":[]}`, "not json": `{`, "no keys": `{}`} {
		file := filepath.Join(dir, strings.ReplaceAll(name, " ", "-"))
		_ = os.WriteFile(file, []byte(content), 0o600)
		if _, err := NewVerifier(t.Context(), OIDC{Issuer: testIssuer, Audience: testAudience, JWKSFile: file},
			slog.New(slog.DiscardHandler)); err == nil {
			t.Errorf("%s JWKS accepted", name)
		}
	}
}

// jwksServer serves a JWKS that a test can change, counting fetches.
type jwksServer struct {
	*httptest.Server
	mu      sync.Mutex
	body    []byte
	fetches atomic.Int32
	stall   time.Duration
}

func newJWKSServer(t *testing.T, body []byte) *jwksServer {
	j := &jwksServer{body: body}
	j.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		j.fetches.Add(1)
		j.mu.Lock()
		b, stall := j.body, j.stall
		j.mu.Unlock()
		if stall > 0 {
			select {
			case <-time.After(stall):
			case <-r.Context().Done():
				return
			}
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(b)
	}))
	t.Cleanup(j.Close)
	return j
}

func (j *jwksServer) set(body []byte, stall time.Duration) {
	j.mu.Lock()
	j.body, j.stall = body, stall
	j.mu.Unlock()
}

// A JWKS URL: keys fetched at start; a new signing key (rotation) is
// picked up by the fetch its unknown kid triggers; further unknown kids
// within MinRefresh do not fetch again.
func TestVerifierJWKSURLRotation(t *testing.T) {
	s := newSigner(t)
	srv := newJWKSServer(t, s.jwks())
	v, err := NewVerifier(t.Context(), OIDC{Issuer: testIssuer, Audience: testAudience, JWKSURL: srv.URL + "/jwks",
		MinRefresh: time.Hour, FetchTimeout: 2 * time.Second}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(t.Context(), s.rs256(t, claimsFor("u1", "read"))); err != nil {
		t.Fatalf("valid token: %v", err)
	}
	if n := srv.fetches.Load(); n != 1 {
		t.Fatalf("%d fetches at start, want 1", n)
	}
	srv.set(s.jwks(rsaJWK("rsa-2", &otherRSA.PublicKey, "sig")), 0)
	rotated := sign(t, jwt.SigningMethodRS256, "rsa-2", otherRSA, claimsFor("u1", "read"))
	if _, err := v.Verify(t.Context(), rotated); err != nil {
		t.Fatalf("token of the rotated key: %v", err)
	}
	if n := srv.fetches.Load(); n != 2 {
		t.Fatalf("%d fetches after rotation, want 2", n)
	}
	for i := range 20 {
		forged := sign(t, jwt.SigningMethodRS256, "forged-"+string(rune('a'+i)), otherRSA, claimsFor("u1", "admin"))
		start := time.Now()
		if _, err := v.Verify(t.Context(), forged); err == nil {
			t.Fatal("forged kid accepted")
		}
		if d := time.Since(start); d > time.Second {
			t.Fatalf("refusing an unknown kid took %s", d)
		}
	}
	if n := srv.fetches.Load(); n != 2 {
		t.Errorf("%d fetches after 20 unknown kids, want still 2 (rate limited)", n)
	}
}

// The identity provider down, slow or answering garbage at start: the
// verifier starts within the fetch timeout, logs, and refuses tokens.
func TestVerifierJWKSURLUnavailable(t *testing.T) {
	s := newSigner(t)
	for name, setup := range map[string]func(*jwksServer){
		"slow": func(j *jwksServer) { j.set(s.jwks(), 10*time.Second) },
		"huge": func(j *jwksServer) {
			// Valid keys, then 2 MiB more: refused as a whole.
			valid := s.jwks()
			b := append(valid[:len(valid)-1:len(valid)-1], `,"x":"`...)
			j.set(append(append(b, bytes.Repeat([]byte("x"), 2<<20)...), `"}`...), 0)
		},
		"not json": func(j *jwksServer) { j.set([]byte("<html>"), 0) },
	} {
		t.Run(name, func(t *testing.T) {
			srv := newJWKSServer(t, nil)
			setup(srv)
			var logged bytes.Buffer
			var mu sync.Mutex
			log := slog.New(slog.NewTextHandler(&lockedWriter{w: &logged, mu: &mu}, nil))
			start := time.Now()
			v, err := NewVerifier(t.Context(), OIDC{Issuer: testIssuer, Audience: testAudience, JWKSURL: srv.URL,
				FetchTimeout: 300 * time.Millisecond}, log)
			if err != nil {
				t.Fatal(err)
			}
			if d := time.Since(start); d > 3*time.Second {
				t.Errorf("start took %s", d)
			}
			if _, err := v.Verify(t.Context(), s.rs256(t, claimsFor("u1", "read"))); err == nil {
				t.Error("token accepted without keys")
			}
			mu.Lock()
			defer mu.Unlock()
			if !strings.Contains(logged.String(), "fetching the OIDC JWKS failed") {
				t.Errorf("no warning logged: %s", logged.String())
			}
		})
	}
}

type lockedWriter struct {
	w  *bytes.Buffer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func TestAuthenticator(t *testing.T) {
	s := newSigner(t)
	keys, err := ParseKeys("svc:svckey-0123456789abcd:read", "")
	if err != nil {
		t.Fatal(err)
	}
	a := &Authenticator{Keys: keys, Tokens: fileVerifier(t, "", s.jwks())}
	if p, err := a.Authenticate(context.Background(), "svckey-0123456789abcd"); err != nil || p.ID != "svc" {
		t.Errorf("key: %v %v", p, err)
	}
	if p, err := a.Authenticate(context.Background(), s.rs256(t, claimsFor("u9", "read"))); err != nil || p.ID != "oidc:u9" {
		t.Errorf("token: %v %v", p, err)
	}
	if _, err := a.Authenticate(context.Background(), "wrong-key-0123456789"); err != ErrUnknownKey {
		t.Errorf("wrong key: %v", err)
	}
	if _, err := (&Authenticator{Keys: keys}).Authenticate(context.Background(), s.rs256(t, claimsFor("u9", "read"))); err != ErrUnknownKey {
		t.Errorf("token without OIDC configured: %v", err)
	}
}
