package httpapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"
	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"

	"cqrsflow/internal/auth"
	"cqrsflow/internal/auth/authtest"
	"cqrsflow/internal/eventschema"
)

// Keys of every kind; foldingStore's orders belong to user "u".
const authzKeys = "rw:rwkey-0123456789abcdef, ro:rokey-0123456789abcdef:read, wo:wokey-0123456789abcdef:write," +
	"alice:alicekey-0123456789ab:read,write:user=u|u2, bob:bobkey-0123456789abcdef:read,write:user=bob," +
	"ops:opskey-0123456789abcdef:admin"

type authzFixture struct {
	e      *gin.Engine
	issuer *authtest.Issuer
	reg    *prometheus.Registry
	logs   *bytes.Buffer
}

// authzEngine has stand-ins for the read routes that answer who asked.
func authzEngine(t *testing.T, mod func(*Config)) *authzFixture {
	t.Helper()
	schemas, err := eventschema.Load()
	if err != nil {
		t.Fatal(err)
	}
	iss := authtest.NewIssuer(t)
	keys, err := auth.ParseKeys(authzKeys, "")
	if err != nil {
		t.Fatal(err)
	}
	tokens, err := auth.NewVerifier(t.Context(), auth.OIDC{Issuer: iss.Issuer, Audience: iss.Audience, JWKSFile: iss.JWKSFile(t)},
		slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.RateLimitRPS = 0
	cfg.ClientRateLimitRPS = 0
	if mod != nil {
		mod(&cfg)
	}
	reg := prometheus.NewRegistry()
	var logs bytes.Buffer
	whoami := func(c *gin.Context) {
		id := ""
		if p := auth.FromContext(c); p != nil {
			id = p.ID
		}
		c.JSON(http.StatusOK, gin.H{"principal": id})
	}
	e, err := NewEngine(cfg, Deps{Store: foldingStore(), Schemas: schemas, Auth: &auth.Authenticator{Keys: keys, Tokens: tokens},
		Registerer: reg, Gatherer: reg, Log: slog.New(slog.NewJSONHandler(&logs, nil)),
		Modules: modules(func(r Routes) error {
			r.CatalogueReads.GET("/v1/products/:id", whoami)
			r.Reads.GET("/v1/orders/:id", whoami)
			r.Reads.GET("/v1/boom", func(c *gin.Context) {
				panic("handler failed for " + c.GetHeader("Authorization") + " on postgres://app:hunter2@db/x")
			})
			return nil
		})})
	if err != nil {
		t.Fatal(err)
	}
	return &authzFixture{e: e, issuer: iss, reg: reg, logs: &logs}
}

func (f *authzFixture) do(method, path, body, credential string, hdr ...string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if credential != "" {
		req.Header.Set("Authorization", "Bearer "+credential)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	f.e.ServeHTTP(w, req)
	return w
}

func errorCode(t *testing.T, w *httptest.ResponseRecorder) string {
	t.Helper()
	var b struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &b); err != nil {
		t.Fatalf("non-JSON answer %d %q", w.Code, w.Body)
	}
	return b.Error.Code
}

const orderForU = `{"user_id":"u","product_id":"p","quantity":1,"total_price":1}`

func TestScopesAndUserBindings(t *testing.T) {
	f := authzEngine(t, nil)
	tok := func(sub, scope string, mod ...func(jwt.MapClaims)) string {
		return f.issuer.Token(t, sub, scope, mod...)
	}
	product := `{"name":"a","price":1,"stock":1}`
	for _, tc := range []struct {
		name, method, path, body, cred string
		want                           int
		code                           string
	}{
		{"anonymous product read", "GET", "/v1/products/" + someID, "", "", 401, "unauthenticated"},
		{"anonymous order read", "GET", "/v1/orders/" + someID, "", "", 401, "unauthenticated"},
		{"anonymous write", "POST", "/v1/products", product, "", 401, "unauthenticated"},
		{"unknown key", "GET", "/v1/products/" + someID, "", "nokey-0123456789abcdef", 401, "unauthenticated"},
		{"default scopes read", "GET", "/v1/orders/" + someID, "", "rwkey-0123456789abcdef", 200, ""},
		{"default scopes write", "POST", "/v1/products", product, "rwkey-0123456789abcdef", 201, ""},
		{"read key reads", "GET", "/v1/products/" + someID, "", "rokey-0123456789abcdef", 200, ""},
		{"read key writes", "POST", "/v1/products", product, "rokey-0123456789abcdef", 403, "forbidden"},
		{"read key pays", "POST", "/v1/orders/" + someID + "/pay", "", "rokey-0123456789abcdef", 403, "forbidden"},
		{"write key reads", "GET", "/v1/orders/" + someID, "", "wokey-0123456789abcdef", 403, "forbidden"},
		{"write key writes", "POST", "/v1/orders", orderForU, "wokey-0123456789abcdef", 201, ""},
		{"bound key, own order", "POST", "/v1/orders", orderForU, "alicekey-0123456789ab", 201, ""},
		{"bound key, own order (seed route)", "POST", "/api/commands/order/create", orderForU, "alicekey-0123456789ab", 202, ""},
		{"bound key, other user's order", "POST", "/v1/orders", orderForU, "bobkey-0123456789abcdef", 403, "forbidden"},
		{"bound key pays own order", "POST", "/v1/orders/" + someID + "/pay", "", "alicekey-0123456789ab", 200, ""},
		{"bound key pays other's order", "POST", "/v1/orders/" + someID + "/pay", "", "bobkey-0123456789abcdef", 404, "not_found"},
		{"bound key, other's order at its version", "POST", "/v1/orders/" + someID + "/cancel", `{"expected_version":1}`, "bobkey-0123456789abcdef", 404, "not_found"},
		{"bound key, other's order at a stale version", "POST", "/v1/orders/" + someID + "/cancel", `{"expected_version":7}`, "bobkey-0123456789abcdef", 404, "not_found"},
		{"bound key writes a product", "POST", "/v1/products", product, "alicekey-0123456789ab", 403, "forbidden"},
		{"bound key deletes a product", "DELETE", "/v1/products/" + someID, "", "alicekey-0123456789ab", 403, "forbidden"},
		{"admin key", "POST", "/v1/orders/" + someID + "/ship", "", "opskey-0123456789abcdef", 422, "illegal_transition"},
		{"admin key reads", "GET", "/v1/orders/" + someID, "", "opskey-0123456789abcdef", 200, ""},
		{"token, own order", "POST", "/v1/orders", orderForU, tok("u", "read write"), 201, ""},
		{"token, other user's order", "POST", "/v1/orders", orderForU, tok("mallory", "openid read write"), 403, "forbidden"},
		{"token pays other's order", "POST", "/v1/orders/" + someID + "/pay", "", tok("mallory", "write"), 404, "not_found"},
		{"token writes a product", "POST", "/v1/products", product, tok("u", "read write"), 403, "forbidden"},
		{"admin token writes a product", "POST", "/v1/products", product, tok("staff", "admin"), 201, ""},
		{"token without scope", "GET", "/v1/orders/" + someID, "", tok("u", "openid email"), 403, "forbidden"},
		{"read token writes", "POST", "/v1/orders", orderForU, tok("u", "read"), 403, "forbidden"},
		{"expired token", "GET", "/v1/orders/" + someID, "", tok("u", "read", authtest.Expired), 401, "unauthenticated"},
		{"token of another audience", "GET", "/v1/orders/" + someID, "", tok("u", "read", func(c jwt.MapClaims) { c["aud"] = "x" }), 401, "unauthenticated"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := f.do(tc.method, tc.path, tc.body, tc.cred)
			if w.Code != tc.want {
				t.Fatalf("%d %s, want %d", w.Code, w.Body, tc.want)
			}
			if tc.code != "" && errorCode(t, w) != tc.code {
				t.Errorf("error code %s, want %s", w.Body, tc.code)
			}
			switch w.Code {
			case 401:
				if !strings.HasPrefix(w.Header().Get("WWW-Authenticate"), "Bearer ") {
					t.Errorf("401 without WWW-Authenticate: %v", w.Header())
				}
			case 403:
				if tc.code == "forbidden" && strings.Contains(tc.name, "scope") && !strings.Contains(w.Header().Get("WWW-Authenticate"), "insufficient_scope") {
					t.Errorf("403 without insufficient_scope: %v", w.Header())
				}
			}
		})
	}
	// A refused token says why, without echoing it.
	expired := tok("u", "read", authtest.Expired)
	w := f.do("GET", "/v1/orders/"+someID, "", expired)
	if !strings.Contains(w.Body.String(), "token expired") || strings.Contains(w.Body.String(), expired[:20]) ||
		!strings.Contains(w.Header().Get("WWW-Authenticate"), `error="invalid_token"`) {
		t.Errorf("expired token answer: %v %s", w.Header(), w.Body)
	}
	// The principal of a token is oidc:<sub>.
	if w := f.do("GET", "/v1/orders/"+someID, "", tok("u-7", "read")); !strings.Contains(w.Body.String(), `"principal":"oidc:u-7"`) {
		t.Errorf("token principal: %s", w.Body)
	}
}

func TestMalformedAuthorization(t *testing.T) {
	f := authzEngine(t, nil)
	for name, h := range map[string]string{
		"basic":     "Basic cnc6cndrZXk=",
		"no scheme": "rwkey-0123456789abcdef",
		"empty":     "Bearer ",
		"huge":      "Bearer " + strings.Repeat("a", 9000),
		"NUL":       "Bearer rwkey-0123456789abcdef\x00",
		"3 dots":    "Bearer a.b.c.d",
		"jwt junk":  "Bearer eyJ.eyJ.sig",
	} {
		req := httptest.NewRequest("GET", "/v1/orders/"+someID, nil)
		req.Header["Authorization"] = []string{h}
		w := httptest.NewRecorder()
		f.e.ServeHTTP(w, req)
		if w.Code != 401 || errorCode(t, w) != "unauthenticated" {
			t.Errorf("%s: %d %s", name, w.Code, w.Body)
		}
	}
}

func TestPublicProductReads(t *testing.T) {
	f := authzEngine(t, func(c *Config) { c.PublicProductReads = true })
	for _, tc := range []struct {
		path, cred string
		want       int
	}{
		{"/v1/products/" + someID, "", 200},
		{"/v1/products/" + someID, "wokey-0123456789abcdef", 200},
		{"/v1/products/" + someID, "nokey-0123456789abcdef", 401}, // a credential sent must be valid
		{"/v1/orders/" + someID, "", 401},                         // never orders
		{"/v1/orders/" + someID, "wokey-0123456789abcdef", 403},
	} {
		if w := f.do("GET", tc.path, "", tc.cred); w.Code != tc.want {
			t.Errorf("%s with %q: %d %s, want %d", tc.path, tc.cred, w.Code, w.Body, tc.want)
		}
	}
	if w := f.do("POST", "/v1/products", `{"name":"a","price":1,"stock":1}`, ""); w.Code != 401 {
		t.Errorf("anonymous write with public reads: %d", w.Code)
	}
}

// Made-up methods, paths and statuses do not create metric series: the
// labels come from fixed sets.
func TestMetricLabelsAreBounded(t *testing.T) {
	f := authzEngine(t, nil)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 500 {
		method := fmt.Sprintf("X%dMETHOD%d", i, rng.IntN(1e6))
		w := f.do(method, "/metrics", "", "")
		if w.Code != 405 {
			t.Fatalf("%s /metrics: %d", method, w.Code)
		}
		f.do("GET", fmt.Sprintf("/nope/%d", i), "", "")
	}
	mfs, err := f.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	series := 0
	for _, mf := range mfs {
		if mf.GetName() != "cqrsflow_http_request_duration_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			series++
			for _, l := range m.GetLabel() {
				v := l.GetValue()
				switch l.GetName() {
				case "method":
					if !methods[v] && v != "other" {
						t.Errorf("method label %q", v)
					}
				case "code":
					if len(v) != 3 || !strings.HasSuffix(v, "xx") {
						t.Errorf("code label %q", v)
					}
				case "route":
					if v != "unmatched" && !strings.HasPrefix(v, "/") {
						t.Errorf("route label %q", v)
					}
				}
			}
		}
	}
	if series != 2 {
		t.Errorf("%d series after 500 made-up methods and 500 unknown paths, want 2 (other 4xx, GET unmatched 4xx)", series)
	}
}

// A panic is logged without the request's credential or a password, and
// answered without either.
func TestPanicLogIsMasked(t *testing.T) {
	f := authzEngine(t, nil)
	w := f.do("GET", "/v1/boom", "", "rwkey-0123456789abcdef")
	if w.Code != 500 || strings.Contains(w.Body.String(), "rwkey") || strings.Contains(w.Body.String(), "hunter2") {
		t.Fatalf("panic answer %d %s", w.Code, w.Body)
	}
	logged := f.logs.String()
	if !strings.Contains(logged, "panic serving request") || !strings.Contains(logged, "handler failed") {
		t.Fatalf("panic not logged: %s", logged)
	}
	for _, secret := range []string{"rwkey-0123456789abcdef", "hunter2"} {
		if strings.Contains(logged, secret) {
			t.Errorf("the panic log reveals %q", secret)
		}
	}
}
