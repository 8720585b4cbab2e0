package query

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"cqrsflow/internal/auth"
	"cqrsflow/internal/esindex"
)

func router(t *testing.T, url string) *gin.Engine {
	t.Helper()
	gin.SetMode(gin.TestMode)
	es, err := esindex.New(url)
	if err != nil {
		t.Fatal(err)
	}
	r := gin.New()
	r.Use(asPrincipal(&auth.Principal{ID: "svc", Scopes: auth.DefaultScopes}))
	Register(r, New(es, "t-", slog.New(slog.NewTextHandler(io.Discard, nil))))
	return r
}

// asPrincipal stands in for the api's authentication.
func asPrincipal(p *auth.Principal) gin.HandlerFunc {
	return func(c *gin.Context) {
		if p != nil {
			auth.Set(c, p)
		}
		c.Next()
	}
}

const (
	pid = "0193a3f0-1c2d-7e4f-8a9b-0c1d2e3f4a5b" // a product id
	oid = "0193a3f0-1c2d-7e4f-8a9b-0c1d2e3f4a5c" // an order id
)

type errBody struct {
	Error struct {
		Code    string            `json:"code"`
		Message string            `json:"message"`
		Details map[string]string `json:"details"`
	} `json:"error"`
}

func get(t *testing.T, r http.Handler, path string) (*httptest.ResponseRecorder, errBody) {
	t.Helper()
	w := httptest.NewRecorder()
	r.ServeHTTP(w, httptest.NewRequest(http.MethodGet, path, nil))
	var b errBody
	_ = json.Unmarshal(w.Body.Bytes(), &b)
	return w, b
}

// Invalid parameters are rejected with 400 naming the field before any
// Elasticsearch call (the client points at a closed port, so reaching it
// would be a 503).
func TestParamValidation(t *testing.T) {
	r := router(t, "http://127.0.0.1:1")
	tests := []struct {
		path, field string
	}{
		{"/v1/products?limit=101", "limit"},
		{"/v1/products?limit=0", "limit"},
		{"/v1/products?limit=abc", "limit"},
		{"/v1/products?page=0", "page"},
		{"/v1/products?page=200&limit=100", "page"},
		{"/v1/products/search", "q"},
		{"/v1/products/search?q=" + strings.Repeat("a", 501), "q"},
		{"/v1/products/search?q=lamp&limit=500", "limit"},
		{"/v1/products/search?q=lamp&min_price=-1", "min_price"},
		{"/v1/products/search?q=lamp&max_price=cheap", "max_price"},
		{"/v1/products/search?q=lamp&min_price=10&max_price=5", "max_price"},
		{"/v1/products/search?q=lamp&in_stock=maybe", "in_stock"},
		{"/v1/products/search?q=lamp&sort=colour", "sort"},
		{"/v1/products/" + pid + "?min_version=0", "min_version"},
		{"/v1/products/" + pid + "?min_version=x", "min_version"},
		{"/v1/products/" + pid + "?min_version=2&wait=11s", "wait"},
		{"/v1/products/" + pid + "?min_version=2&wait=soon", "wait"},
		{"/v1/products/" + pid + "?wait=-1s", "wait"},
		{"/v1/orders/" + oid + "?min_version=0", "min_version"},
		{"/v1/orders/" + oid + "?min_version=-3", "min_version"},
		{"/v1/orders/" + oid + "?min_version=2.5", "min_version"},
		{"/v1/orders/" + oid + "?min_version=99999999999999999999", "min_version"},
		{"/v1/orders/" + oid + "?min_version=2&wait=11s", "wait"},
		{"/v1/orders/" + oid + "?min_version=2&wait=2", "wait"},
		{"/v1/orders/" + oid + "?wait=soon", "wait"},
		{"/v1/orders", "user_id"},
		{"/v1/orders?user_id=u1&status=lost", "status"},
		{"/v1/orders?user_id=u1&limit=1000", "limit"},
	}
	for _, tc := range tests {
		t.Run(tc.path, func(t *testing.T) {
			w, b := get(t, r, tc.path)
			if w.Code != http.StatusBadRequest {
				t.Fatalf("status %d, want 400 (body %s)", w.Code, w.Body)
			}
			if b.Error.Code != "invalid_parameter" || b.Error.Details["field"] != tc.field || !strings.Contains(b.Error.Message, tc.field) {
				t.Errorf("error %+v, want field %q named", b.Error, tc.field)
			}
		})
	}
}

// Valid requests reach Elasticsearch; when it is down the answer is 503,
// never 500. /v1/products/search is routed to search, not to get-by-id.
func TestElasticsearchDownIs503(t *testing.T) {
	r := router(t, "http://127.0.0.1:1")
	for _, path := range []string{
		"/v1/products/" + pid, "/v1/products/" + pid + "?min_version=3&wait=100ms", "/v1/products?page=2&limit=100",
		"/v1/products/search?q=lamp&sort=-price&in_stock=true&min_price=1", "/v1/orders/" + oid, "/v1/orders/" + oid + "?min_version=2&wait=100ms",
		"/v1/orders?user_id=u1&status=paid",
	} {
		w, b := get(t, r, path)
		if w.Code != http.StatusServiceUnavailable || b.Error.Code != "dependency_unavailable" {
			t.Errorf("%s: status %d code %q, want 503 dependency_unavailable", path, w.Code, b.Error.Code)
		}
	}
}

func TestParseFreshness(t *testing.T) {
	gin.SetMode(gin.TestMode)
	for query, want := range map[string]Freshness{
		"":                                {},
		"min_version=3":                   {MinVersion: 3},
		"min_version=3&wait=2s":           {MinVersion: 3, Wait: 2 * time.Second},
		"min_version=1&wait=10s":          {MinVersion: 1, Wait: MaxWait},
		"wait=250ms":                      {Wait: 250 * time.Millisecond},
		"min_version=7&wait=0s":           {MinVersion: 7},
		"min_version=&wait=":              {},
		"min_version=4611686018427387904": {MinVersion: 1 << 62},
	} {
		c, _ := gin.CreateTestContext(httptest.NewRecorder())
		c.Request = httptest.NewRequest(http.MethodGet, "/v1/orders/o1?"+query, nil)
		got, err := ParseFreshness(c)
		if err != nil || got != want {
			t.Errorf("%q: %+v, %v; want %+v", query, got, err, want)
		}
	}
}

// The user's text is a JSON value inside the query, never JSON syntax.
func TestSearchBodyKeepsQueryAsData(t *testing.T) {
	q := `lamp"}},{"match_all":{}}],"x":{"y":"`
	b := ProductSearchBody(SearchParams{Q: q, Paging: Paging{1, 20}})
	var back struct {
		Query struct {
			Bool struct {
				Must []struct {
					MultiMatch struct {
						Query string `json:"query"`
					} `json:"multi_match"`
				} `json:"must"`
			} `json:"bool"`
		} `json:"query"`
	}
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if len(back.Query.Bool.Must) != 1 || back.Query.Bool.Must[0].MultiMatch.Query != q {
		t.Errorf("query text did not round-trip as a value: %s", b)
	}
}

func FuzzParseSearch(f *testing.F) {
	f.Add("lamp", "1", "20", "price", "1.5", "true")
	f.Add("", "0", "x", "colour", "-1", "maybe")
	gin.SetMode(gin.TestMode)
	f.Fuzz(func(t *testing.T, q, page, limit, sort, minPrice, inStock string) {
		w := httptest.NewRecorder()
		c, _ := gin.CreateTestContext(w)
		u := "/v1/products/search?" + (urlValues{"q": q, "page": page, "limit": limit, "sort": sort, "min_price": minPrice, "in_stock": inStock}).encode()
		c.Request = httptest.NewRequest(http.MethodGet, u, nil)
		p, err := ParseSearch(c)
		if err != nil {
			return
		}
		if p.Limit < 1 || p.Limit > MaxLimit || p.Page < 1 || p.Q == "" {
			t.Fatalf("accepted invalid params %+v", p)
		}
		if b := ProductSearchBody(p); !json.Valid(b) {
			t.Fatalf("body is not JSON: %s", b)
		}
		if want, _ := json.Marshal(referenceSearchBody(p)); string(ProductSearchBody(p)) != string(want) {
			t.Fatalf("body\n%s\nwant what encoding/json makes of the query\n%s", ProductSearchBody(p), want)
		}
	})
}
