package query

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/elastic/go-elasticsearch/v8"
	"github.com/gin-gonic/gin"

	"cqrsflow/internal/auth"
)

// canned answers like Elasticsearch from memory: a realistic page of 20
// product hits for a search, one product for a GET. The handlers'
// benchmarks measure the api's own work, not a network or a node.
type canned struct {
	search, doc []byte
}

func (c canned) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		_, _ = io.Copy(io.Discard, r.Body)
		r.Body.Close()
	}
	body := c.search
	if strings.Contains(r.URL.Path, "/_doc/") {
		body = c.doc
	}
	return &http.Response{StatusCode: 200, Request: r, ContentLength: int64(len(body)), Body: io.NopCloser(bytes.NewReader(body)),
		Header: http.Header{"X-Elastic-Product": {"Elasticsearch"}, "Content-Type": {"application/json"}}}, nil
}

func productSource(i int) string {
	return fmt.Sprintf(`{"id":"0193a3f0-1c2d-7e4f-8a9b-0c1d2e3f%04x","version":%d,"deleted":false,"created_at":"2026-11-27T16:51:29.275798141Z","updated_at":"2026-11-27T16:51:29.275798141Z","last_event_id":"1f0b42fd-2ac1-485b-b74a-5d53a12319b0","recorded_at":"2026-11-27T16:51:29.283202481Z","name":"Item %d wooden","description":"a wooden item of the read benchmark, number %d, with a few more words to search","price":%d.%02d,"stock":%d}`,
		i, 1+i%5, i, i, i%1000, i%100, i%50)
}

func cannedES() canned {
	var s strings.Builder
	s.WriteString(`{"took":3,"timed_out":false,"_shards":{"total":1,"successful":1,"skipped":0,"failed":0},"hits":{"total":{"value":10000,"relation":"eq"},"max_score":null,"hits":[`)
	for i := range 20 {
		if i > 0 {
			s.WriteByte(',')
		}
		fmt.Fprintf(&s, `{"_index":"t-products_v1","_id":"0193a3f0-1c2d-7e4f-8a9b-0c1d2e3f%04x","_score":0.0952,"_source":%s,"sort":[0.0952,"0193a3f0-1c2d-7e4f-8a9b-0c1d2e3f%04x"]}`,
			i, productSource(i), i)
	}
	s.WriteString(`]}}`)
	doc := `{"_index":"t-products_v1","_id":"` + pid + `","_version":3,"_seq_no":7,"_primary_term":1,"found":true,"_source":` + productSource(7) + `}`
	return canned{search: []byte(s.String()), doc: []byte(doc)}
}

// cannedRouter is the read routes on a client of canned.
func cannedRouter(tb testing.TB) *gin.Engine {
	tb.Helper()
	es, err := elasticsearch.NewClient(elasticsearch.Config{Addresses: []string{"http://es.invalid:9200"}, Transport: cannedES()})
	if err != nil {
		tb.Fatal(err)
	}
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	r.Use(asPrincipal(&auth.Principal{ID: "svc", Scopes: auth.DefaultScopes}))
	Register(r, New(es, "t-", slog.New(slog.DiscardHandler)))
	return r
}

func benchRoute(b *testing.B, path string) {
	r := cannedRouter(b)
	req := httptest.NewRequest(http.MethodGet, path, nil)
	w := httptest.NewRecorder()
	r.ServeHTTP(w, req)
	if w.Code != 200 {
		b.Fatalf("%s: %d %s", path, w.Code, w.Body)
	}
	b.ReportAllocs()
	start := cpuTime()
	for b.Loop() {
		w := httptest.NewRecorder()
		r.ServeHTTP(w, req)
	}
	b.ReportMetric(float64(cpuTime()-start)/float64(b.N), "cpu-ns/op")
}

// cpuTime is the process's user+system CPU time so far: on a shared
// machine the wall time per op says more about the neighbours than about
// the code, so the benchmarks report both.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func BenchmarkSearchProducts(b *testing.B) { benchRoute(b, "/v1/products/search?q=item&limit=20") }
func BenchmarkGetProduct(b *testing.B)     { benchRoute(b, "/v1/products/"+pid) }
func BenchmarkListProducts(b *testing.B)   { benchRoute(b, "/v1/products?page=3&limit=20") }
