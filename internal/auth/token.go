package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/MicahParks/jwkset"
	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/time/rate"

	"cqrsflow/internal/config"
)

// OIDC configures the bearer tokens of an OpenID Connect identity
// provider: who issues them, for which audience, and where its public keys
// are (a JWKS URL, fetched and refreshed, or a JWKS file read at start).
type OIDC struct {
	Issuer   string
	Audience string
	JWKSURL  string
	JWKSFile string
	// ScopePrefix is put before the scope names a token must carry: with
	// "cqrsflow:", the token scope cqrsflow:read grants read.
	ScopePrefix string
	// Leeway tolerates clock skew on exp, nbf and iat (default 30 s).
	Leeway time.Duration
	// Refresh is how often the JWKS URL is fetched again (default 15 m);
	// an unknown key id triggers a fetch at most once per MinRefresh
	// (default 1 m), so forged key ids cannot make the api hammer the
	// identity provider.
	Refresh    time.Duration
	MinRefresh time.Duration
	// FetchTimeout bounds one JWKS fetch (default 5 s).
	FetchTimeout time.Duration
}

// Enabled reports whether any OIDC setting is present.
func (o OIDC) Enabled() bool {
	return o.Issuer != "" || o.Audience != "" || o.JWKSURL != "" || o.JWKSFile != ""
}

// Validate reports every missing or contradictory setting.
func (o OIDC) Validate() error {
	if !o.Enabled() {
		return nil
	}
	var errs []error
	if o.Issuer == "" {
		errs = append(errs, errors.New("OIDC_ISSUER is required with OIDC tokens"))
	}
	if o.Audience == "" {
		errs = append(errs, errors.New("OIDC_AUDIENCE is required with OIDC tokens (else tokens for any client of the issuer would pass)"))
	}
	switch {
	case (o.JWKSURL == "") == (o.JWKSFile == ""):
		errs = append(errs, errors.New("exactly one of OIDC_JWKS_URL and OIDC_JWKS_FILE is required with OIDC tokens"))
	case o.JWKSURL != "":
		if err := checkJWKSURL(o.JWKSURL); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// checkJWKSURL allows https, and plain http only to a loopback host.
func checkJWKSURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return errors.New("OIDC_JWKS_URL must be an absolute https:// URL")
	}
	if u.Scheme == "https" {
		return nil
	}
	host := u.Hostname()
	if ip := net.ParseIP(host); u.Scheme == "http" && (host == "localhost" || ip != nil && ip.IsLoopback()) {
		return nil
	}
	return errors.New("OIDC_JWKS_URL must use https (plain http only to a loopback address)")
}

// AllowedAlgorithms are the only signature algorithms accepted: never
// "none", never an HMAC (whose key would be the public key).
var AllowedAlgorithms = []string{"RS256", "ES256"}

// maxJWKSBytes bounds a fetched JWKS document.
const maxJWKSBytes = 1 << 20

// Verifier checks bearer tokens and turns them into principals.
type Verifier struct {
	cfg    OIDC
	kf     keyfunc.Keyfunc
	parser *jwt.Parser
}

// NewVerifier loads the JWKS (a URL is fetched now and refreshed until
// ctx ends; a failed first fetch is logged and retried, so the api starts
// while the identity provider is down and accepts tokens once it is back).
func NewVerifier(ctx context.Context, cfg OIDC, log *slog.Logger) (*Verifier, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Leeway <= 0 {
		cfg.Leeway = 30 * time.Second
	}
	if cfg.Refresh <= 0 {
		cfg.Refresh = 15 * time.Minute
	}
	if cfg.MinRefresh <= 0 {
		cfg.MinRefresh = time.Minute
	}
	if cfg.FetchTimeout <= 0 {
		cfg.FetchTimeout = 5 * time.Second
	}
	var store jwkset.Storage
	var err error
	if cfg.JWKSFile != "" {
		store, err = fileStorage(cfg.JWKSFile)
	} else {
		store, err = urlStorage(ctx, cfg, log)
	}
	if err != nil {
		return nil, err
	}
	kf, err := keyfunc.New(keyfunc.Options{Ctx: ctx, Storage: store, UseWhitelist: []jwkset.USE{jwkset.UseSig, ""}})
	if err != nil {
		return nil, fmt.Errorf("OIDC JWKS: %w", err)
	}
	return &Verifier{cfg: cfg, kf: kf, parser: jwt.NewParser(
		jwt.WithValidMethods(AllowedAlgorithms),
		jwt.WithIssuer(cfg.Issuer),
		jwt.WithAudience(cfg.Audience),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(cfg.Leeway),
	)}, nil
}

func fileStorage(path string) (jwkset.Storage, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("OIDC_JWKS_FILE: %w", err)
	}
	var set jwkset.JWKSMarshal
	if err := json.Unmarshal(raw, &set); err != nil {
		return nil, fmt.Errorf("OIDC_JWKS_FILE %s: not a JWK set: %w", path, err)
	}
	store, err := set.ToStorage()
	if err != nil {
		return nil, fmt.Errorf("OIDC_JWKS_FILE %s: %w", path, err)
	}
	if keys, err := store.KeyReadAll(context.Background()); err != nil || len(keys) == 0 {
		return nil, fmt.Errorf("OIDC_JWKS_FILE %s: no usable key", path)
	}
	return store, nil
}

func urlStorage(ctx context.Context, cfg OIDC, log *slog.Logger) (jwkset.Storage, error) {
	shown := config.MaskURL(cfg.JWKSURL)
	client := &http.Client{Timeout: cfg.FetchTimeout, Transport: limitBody{http.DefaultTransport, maxJWKSBytes}}
	st, err := jwkset.NewStorageFromHTTP(cfg.JWKSURL, jwkset.HTTPClientStorageOptions{
		Client: client, Ctx: ctx, HTTPTimeout: cfg.FetchTimeout, RefreshInterval: cfg.Refresh,
		NoErrorReturnFirstHTTPReq: true,
		RefreshErrorHandler: func(_ context.Context, err error) {
			log.Warn("fetching the OIDC JWKS failed; tokens signed with unknown keys are refused until it succeeds",
				"url", shown, "err", err)
		},
	})
	if err != nil {
		return nil, fmt.Errorf("OIDC_JWKS_URL %s: %w", shown, err)
	}
	// The refresh an unknown key id triggers waits for the limiter only
	// within FetchTimeout, and the fetch shares that bound.
	return jwkset.NewHTTPClient(jwkset.HTTPClientOptions{
		HTTPURLs:          map[string]jwkset.Storage{cfg.JWKSURL: st},
		RateLimitWaitMax:  cfg.FetchTimeout,
		RefreshUnknownKID: rate.NewLimiter(rate.Every(cfg.MinRefresh), 1),
	})
}

// limitBody caps response bodies: a JWKS larger than max fails to decode
// instead of filling memory.
type limitBody struct {
	rt  http.RoundTripper
	max int64
}

func (l limitBody) RoundTrip(r *http.Request) (*http.Response, error) {
	res, err := l.rt.RoundTrip(r)
	if err == nil {
		res.Body = struct {
			io.Reader
			io.Closer
		}{io.LimitReader(res.Body, l.max), res.Body}
	}
	return res, err
}

// TokenError is a refused token; Reason is safe to tell the client.
type TokenError struct {
	Reason string
	Err    error
}

func (e *TokenError) Error() string { return e.Reason + ": " + e.Err.Error() }
func (e *TokenError) Unwrap() error { return e.Err }

// scopeList reads a scope claim given as one space-separated string (RFC
// 8693 `scope`) or as an array (`scp` of several providers).
type scopeList []string

func (s *scopeList) UnmarshalJSON(b []byte) error {
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*s = strings.Fields(one)
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return errors.New("scope claim must be a string or an array of strings")
	}
	*s = many
	return nil
}

type claims struct {
	jwt.RegisteredClaims
	Scope scopeList `json:"scope"`
	Scp   scopeList `json:"scp"`
}

// MaxSubject bounds the sub claim: it becomes the user id of orders.
const MaxSubject = 100

// Verify checks a token's signature (an allowed algorithm and a key of
// the JWKS), issuer, audience, expiry (required), not-before and
// issued-at, and returns its principal: "oidc:" + sub, the scopes it
// carries, bound to sub unless it has admin.
func (v *Verifier) Verify(ctx context.Context, raw string) (*Principal, error) {
	var c claims
	if _, err := v.parser.ParseWithClaims(raw, &c, v.kf.KeyfuncCtx(ctx)); err != nil {
		return nil, &TokenError{Reason: tokenReason(err), Err: err}
	}
	sub := c.Subject
	if sub == "" || utf8.RuneCountInString(sub) > MaxSubject || !utf8.ValidString(sub) ||
		strings.IndexFunc(sub, unicode.IsControl) >= 0 {
		return nil, &TokenError{Reason: "the sub claim must be a user id of 1 to 100 printable characters", Err: jwt.ErrTokenInvalidSubject}
	}
	var scopes Scopes
	for _, name := range append(c.Scope, c.Scp...) {
		if rest, ok := strings.CutPrefix(name, v.cfg.ScopePrefix); ok {
			s, _ := ParseScope(rest) // other scopes (openid, email…) grant nothing here
			scopes |= s
		}
	}
	p := &Principal{ID: "oidc:" + sub, Scopes: scopes, Token: true}
	if !scopes.Has(Admin) {
		p.Users = []string{sub}
	}
	return p, nil
}

func tokenReason(err error) string {
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		return "malformed token"
	case errors.Is(err, jwt.ErrTokenExpired):
		return "token expired"
	case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return "token not valid yet"
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return "token from another issuer"
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return "token for another audience"
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return "token lacks a required claim (iss, aud, exp and sub are required)"
	case errors.Is(err, jwt.ErrTokenInvalidClaims):
		return "token claims are invalid"
	}
	return "token signature not verified"
}
