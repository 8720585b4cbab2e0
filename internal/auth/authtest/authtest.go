// Package authtest is a stand-in OpenID Connect identity provider for
// tests: an RSA key, its JWKS (as a file or served over HTTP) and tokens
// signed with it.
package authtest

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Issuer signs tokens for Audience as Issuer with an RSA key.
type Issuer struct {
	Issuer   string
	Audience string
	KID      string
	Key      *rsa.PrivateKey
}

// NewIssuer returns an issuer with a fresh 2048-bit key.
func NewIssuer(t testing.TB) *Issuer {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return &Issuer{Issuer: "https://id.example.test/realms/shop", Audience: "cqrsflow-api", KID: "test-1", Key: k}
}

// JWKS is the issuer's public key as a JWK set.
func (i *Issuer) JWKS() []byte {
	b64 := base64.RawURLEncoding.EncodeToString
	pub := i.Key.PublicKey
	b, _ := json.Marshal(map[string]any{"keys": []map[string]any{{"kty": "RSA", "kid": i.KID, "use": "sig", "alg": "RS256",
		"n": b64(pub.N.Bytes()), "e": b64(big.NewInt(int64(pub.E)).Bytes())}}})
	return b
}

// JWKSFile writes the JWKS to a temporary file and returns its path.
func (i *Issuer) JWKSFile(t testing.TB) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(p, i.JWKS(), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// JWKSServer serves the JWKS over HTTP until the test ends; it returns
// the URL.
func (i *Issuer) JWKSServer(t testing.TB) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(i.JWKS())
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/jwks"
}

// Token signs a token for sub with scope (space-separated; "" for none),
// valid for five minutes; mod changes claims before signing.
func (i *Issuer) Token(t testing.TB, sub, scope string, mod ...func(jwt.MapClaims)) string {
	t.Helper()
	now := time.Now()
	c := jwt.MapClaims{"iss": i.Issuer, "aud": i.Audience, "sub": sub, "iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix()}
	if scope != "" {
		c["scope"] = scope
	}
	for _, m := range mod {
		m(c)
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, c)
	tok.Header["kid"] = i.KID
	s, err := tok.SignedString(i.Key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Expired makes a token expired an hour ago.
func Expired(c jwt.MapClaims) { c["exp"] = time.Now().Add(-time.Hour).Unix() }
