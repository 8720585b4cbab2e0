package query

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"

	"github.com/gin-gonic/gin"

	"cqrsflow/internal/auth"
	"cqrsflow/internal/esindex"
)

// fakeES answers like Elasticsearch (the client checks the product
// header): every GET finds a document at a very high version owned by
// user u1, every search finds nothing. It records the request URIs.
type fakeES struct {
	*httptest.Server
	mu   sync.Mutex
	uris []string
}

func newFakeES(t testing.TB) *fakeES {
	f := &fakeES{}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.uris = append(f.uris, r.Method+" "+r.RequestURI)
		f.mu.Unlock()
		w.Header().Set("X-Elastic-Product", "Elasticsearch")
		w.Header().Set("Content-Type", "application/json")
		if strings.Contains(r.URL.Path, "/_doc/") {
			id := r.URL.Path[strings.LastIndex(r.URL.Path, "/")+1:]
			quoted, _ := json.Marshal(id)
			fmt.Fprintf(w, `{"found":true,"_source":{"id":%s,"user_id":"u1","version":%d}}`, quoted, int64(1)<<62)
			return
		}
		_, _ = io.WriteString(w, `{"hits":{"total":{"value":0},"hits":[]}}`)
	}))
	t.Cleanup(f.Close)
	return f
}

// requests returns the request URIs received since the last call.
func (f *fakeES) requests() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := f.uris
	f.uris = nil
	return out
}

func routerAs(t testing.TB, esURL string, p *auth.Principal, gate WaitGate) *gin.Engine {
	t.Helper()
	gin.SetMode(gin.TestMode)
	es, err := esindex.New(esURL)
	if err != nil {
		t.Fatal(err)
	}
	r := gin.New()
	r.UseRawPath = true // as the api's engine: %2F stays inside the id
	r.RedirectTrailingSlash = false
	r.Use(asPrincipal(p))
	h := New(es, "t-", slog.New(slog.DiscardHandler))
	if gate != nil {
		h.LimitWaits(gate)
	}
	Register(r, h)
	return r
}

// Ids that are not UUIDs never reach Elasticsearch: 400 naming id, the
// value not echoed.
func TestIDsAreValidatedAtTheEdge(t *testing.T) {
	es := newFakeES(t)
	r := routerAs(t, es.URL, &auth.Principal{ID: "svc", Scopes: auth.Read}, nil)
	for _, id := range []string{
		"x%3Frefresh=true", "x%25zz", "%00", "x%0Ay", strings.Repeat("a", 10000), "abc",
		"{" + pid + "}", "urn:uuid:" + pid, strings.ReplaceAll(pid, "-", ""), pid + "0", "..%2F_cluster",
	} {
		for _, kind := range []string{"products", "orders"} {
			w, b := get(t, r, "/v1/"+kind+"/"+id+"?min_version=1&wait=10s")
			if w.Code != 400 || b.Error.Details["field"] != "id" {
				t.Errorf("%s %.40q: %d %s, want 400 naming id", kind, id, w.Code, w.Body)
			}
			if len(w.Body.String()) > 400 || strings.Contains(w.Body.String(), "refresh") {
				t.Errorf("%s %.40q: the answer echoes the id: %.200s", kind, id, w.Body)
			}
		}
	}
	if reqs := es.requests(); len(reqs) != 0 {
		t.Errorf("Elasticsearch got %v", reqs)
	}
	// Upper case is the same id, read in canonical form.
	w, _ := get(t, r, "/v1/products/"+strings.ToUpper(pid))
	if reqs := es.requests(); w.Code != 200 || len(reqs) != 1 || reqs[0] != "GET /t-products/_doc/"+pid {
		t.Errorf("upper-case id: %d, Elasticsearch got %v", w.Code, reqs)
	}
}

// Whatever id reaches getDoc stays one path segment of one GET.
func TestGetDocEscapesTheID(t *testing.T) {
	es := newFakeES(t)
	c, err := esindex.New(es.URL)
	if err != nil {
		t.Fatal(err)
	}
	h := New(c, "t-", slog.New(slog.DiscardHandler))
	for _, id := range []string{"x?refresh=true", "x%zz", "a/b", "../_cluster/health", "a b", "\x00", "x#y"} {
		var doc Product
		if _, err := getDoc(context.Background(), h, h.products, id, &doc); err != nil {
			t.Errorf("%q: %v", id, err)
		}
	}
	want := []string{
		"GET /t-products/_doc/x%3Frefresh=true", "GET /t-products/_doc/x%25zz", "GET /t-products/_doc/a%2Fb",
		"GET /t-products/_doc/..%2F_cluster%2Fhealth", "GET /t-products/_doc/a%20b", "GET /t-products/_doc/%00",
		"GET /t-products/_doc/x%23y",
	}
	if got := es.requests(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("Elasticsearch got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestOrderReadsFollowThePrincipal(t *testing.T) {
	es := newFakeES(t) // its orders belong to u1
	bound := &auth.Principal{ID: "oidc:u1", Scopes: auth.Read, Users: []string{"u1"}, Token: true}
	other := &auth.Principal{ID: "oidc:u2", Scopes: auth.Read, Users: []string{"u2"}, Token: true}
	two := &auth.Principal{ID: "web", Scopes: auth.Read, Users: []string{"u1", "u3"}}
	admin := &auth.Principal{ID: "ops", Scopes: auth.Admin}
	for _, tc := range []struct {
		name  string
		p     *auth.Principal
		path  string
		want  int
		field string
		es    string // the query the list sent, "" when none
	}{
		{"anonymous get", nil, "/v1/orders/" + oid, 401, "", ""},
		{"anonymous list", nil, "/v1/orders?user_id=u1", 401, "", ""},
		{"owner get", bound, "/v1/orders/" + oid, 200, "", ""},
		{"other user get", other, "/v1/orders/" + oid, 404, "", ""},
		{"owner list, user_id implied", bound, "/v1/orders", 200, "", `"user_id":"u1"`},
		{"owner list", bound, "/v1/orders?user_id=u1", 200, "", `"user_id":"u1"`},
		{"list of another user", bound, "/v1/orders?user_id=u2", 403, "user_id", ""},
		{"two users, none named", two, "/v1/orders", 400, "user_id", ""},
		{"two users, one named", two, "/v1/orders?user_id=u3", 200, "", `"user_id":"u3"`},
		{"admin lists all", admin, "/v1/orders", 200, "", `"filter":[]`},
		{"admin lists one user", admin, "/v1/orders?user_id=u9", 200, "", `"user_id":"u9"`},
		{"user_id too long", admin, "/v1/orders?user_id=" + strings.Repeat("u", 101), 400, "user_id", ""},
		{"user_id with a control character", admin, "/v1/orders?user_id=u%0A1", 400, "user_id", ""},
		{"user_id not UTF-8", admin, "/v1/orders?user_id=%FF", 400, "user_id", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var body string
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				b, _ := io.ReadAll(r.Body)
				body = string(b)
				es.Config.Handler.ServeHTTP(w, r)
			}))
			defer srv.Close()
			w, b := get(t, routerAs(t, srv.URL, tc.p, nil), tc.path)
			if w.Code != tc.want {
				t.Fatalf("%d %s, want %d", w.Code, w.Body, tc.want)
			}
			if tc.field != "" && b.Error.Details["field"] != tc.field {
				t.Errorf("error %s does not name %s", w.Body, tc.field)
			}
			if tc.es != "" && !strings.Contains(body, tc.es) {
				t.Errorf("search body %s lacks %s", body, tc.es)
			}
			if tc.want == 401 && w.Header().Get("WWW-Authenticate") == "" {
				t.Errorf("401 without WWW-Authenticate")
			}
		})
	}
}

type gateFunc func(*gin.Context) (func(), bool)

func (g gateFunc) Enter(c *gin.Context) (func(), bool) { return g(c) }

// Only waiting reads pass the gate; a full gate is a 429, and every slot
// taken is given back.
func TestWaitsPassTheGate(t *testing.T) {
	es := newFakeES(t)
	var mu sync.Mutex
	entered, left, full := 0, 0, false
	gate := gateFunc(func(*gin.Context) (func(), bool) {
		mu.Lock()
		defer mu.Unlock()
		if full {
			return nil, false
		}
		entered++
		return func() { mu.Lock(); left++; mu.Unlock() }, true
	})
	r := routerAs(t, es.URL, &auth.Principal{ID: "svc", Scopes: auth.Read}, gate)
	for _, q := range []string{"", "?min_version=3", "?wait=2s"} {
		if w, _ := get(t, r, "/v1/products/"+pid+q); w.Code != 200 {
			t.Errorf("%s: %d", q, w.Code)
		}
	}
	if entered != 0 {
		t.Errorf("reads that do not wait entered the gate %d times", entered)
	}
	if w, _ := get(t, r, "/v1/orders/"+oid+"?min_version=3&wait=2s"); w.Code != 200 || entered != 1 || left != 1 {
		t.Errorf("waiting read: %d, entered %d left %d", w.Code, entered, left)
	}
	full = true
	w, b := get(t, r, "/v1/products/"+pid+"?min_version=3&wait=2s")
	if w.Code != 429 || b.Error.Code != "too_many_waits" || w.Header().Get("Retry-After") == "" {
		t.Errorf("full gate: %d %s", w.Code, w.Body)
	}
}

var esRequest = regexp.MustCompile(`^(GET /t-(products|orders)/_doc/[0-9a-f-]{36}(\?realtime=true)?|POST /t-(products|orders)/_search)$`)

// FuzzReadParams sends every read route arbitrary ids and parameters
// (seed corpus in testdata/fuzz/FuzzReadParams). Whatever they are, the
// answer is 200, 400 naming a field, 403 or 404 — never a 5xx — and
// Elasticsearch gets only a GET of one document by a UUID or a _search.
func FuzzReadParams(f *testing.F) {
	f.Add(pid, "1", "20", "lamp", "3", "2s", "u1", "paid", "price", "1.5")
	f.Add("x%3Frefresh=true", "0", "x", "", "0", "soon", "", "lost", "colour", "-1")
	f.Add(strings.Repeat("a", 300), "99999", "100", strings.Repeat("q", 501), "99999999999999999999", "11s", strings.Repeat("u", 101), "", "-name", "NaN")
	f.Add("\x00", "-1", "1e3", "\xff", "-3", "-1s", "u\x00", "created", "", "Inf")
	f.Add(strings.ToUpper(pid), "2", "50", `"}},{"match_all":{}}]`, "1", "0s", "u2", "cancelled", "name", "")
	es := newFakeES(f)
	r := routerAs(f, es.URL, &auth.Principal{ID: "web", Scopes: auth.Read, Users: []string{"u1", "u2"}}, nil)
	f.Fuzz(func(t *testing.T, id, page, limit, q, minVersion, wait, user, status, sort, price string) {
		paging := url.Values{"page": {page}, "limit": {limit}}
		paths := []string{
			"/v1/products/" + url.PathEscape(id) + "?" + url.Values{"min_version": {minVersion}, "wait": {wait}}.Encode(),
			"/v1/orders/" + url.PathEscape(id) + "?" + url.Values{"min_version": {minVersion}, "wait": {wait}}.Encode(),
			"/v1/products?" + paging.Encode(),
			"/v1/products/search?" + url.Values{"q": {q}, "page": {page}, "limit": {limit}, "sort": {sort},
				"min_price": {price}, "max_price": {price}, "in_stock": {status}}.Encode(),
			"/v1/orders?" + url.Values{"user_id": {user}, "status": {status}, "page": {page}, "limit": {limit}}.Encode(),
		}
		for _, p := range paths {
			w := httptest.NewRecorder()
			r.ServeHTTP(w, httptest.NewRequest(http.MethodGet, p, nil))
			var b errBody
			_ = json.Unmarshal(w.Body.Bytes(), &b)
			switch w.Code {
			case 200, 404:
			case 400:
				if b.Error.Details["field"] == "" {
					t.Fatalf("%.200s: 400 without a field: %s", p, w.Body)
				}
			case 403:
				if b.Error.Details["field"] != "user_id" {
					t.Fatalf("%.200s: 403 %s", p, w.Body)
				}
			default:
				t.Fatalf("%.200s: %d %s", p, w.Code, w.Body)
			}
			if !utf8.Valid(w.Body.Bytes()) || w.Body.Len() > 2048 {
				t.Fatalf("%.200s: answer of %d bytes, valid UTF-8 %v", p, w.Body.Len(), utf8.Valid(w.Body.Bytes()))
			}
		}
		for _, req := range es.requests() {
			if !esRequest.MatchString(req) {
				t.Fatalf("Elasticsearch got %q", req)
			}
		}
	})
}
