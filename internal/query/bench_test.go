package query

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"syscall"
	"testing"
	"time"

	"github.com/elastic/go-elasticsearch/v8"
	"github.com/gin-gonic/gin"

	"cqrsflow/internal/auth"
	"cqrsflow/internal/testenv/canned"
)

// cannedRouter is the read routes on a client of canned.
func cannedRouter(tb testing.TB) *gin.Engine {
	tb.Helper()
	es, err := elasticsearch.NewClient(elasticsearch.Config{Addresses: []string{"http://es.invalid:9200"}, Transport: canned.Products("t-products_v1", pid)})
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
