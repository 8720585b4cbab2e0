package httpapi

import (
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
	"github.com/prometheus/client_golang/prometheus"

	"cqrsflow/internal/eventschema"
	"cqrsflow/internal/query"
	"cqrsflow/internal/testenv/canned"
)

// The hot routes through the whole engine as the api binary builds it:
// every middleware, the default limits (the per-principal one off, as in
// `bench write`), the access log at the default level (JSON, discarded),
// metrics. The event store is foldingStore and Elasticsearch a canned
// answer from memory, so what is measured is the api's own work.

func benchEngine(b *testing.B) *gin.Engine {
	b.Helper()
	schemas, err := eventschema.Load()
	if err != nil {
		b.Fatal(err)
	}
	es, err := elasticsearch.NewClient(elasticsearch.Config{Addresses: []string{"http://es.invalid:9200"}, Transport: canned.Products("products_v1", someID)})
	if err != nil {
		b.Fatal(err)
	}
	log := slog.New(slog.NewJSONHandler(io.Discard, nil))
	reads := query.New(es, "", log)
	cfg := DefaultConfig()
	cfg.RateLimitRPS = 0
	e, err := NewEngine(cfg, Deps{Store: foldingStore(), Schemas: schemas, Auth: unitAuth(b, "unit:"+unitKey),
		Registerer: prometheus.NewRegistry(), Log: log, Modules: modules(func(r Routes) error {
			query.RegisterProducts(r.CatalogueReads, reads)
			query.RegisterOrders(r.Reads, reads)
			return nil
		})})
	if err != nil {
		b.Fatal(err)
	}
	return e
}

// cpuTime is the process's user+system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchRequest serves the request newReq makes in a loop, checking the
// first answer. It reports the CPU time per request besides the wall
// time: on a shared machine the wall time says more about the neighbours.
func benchRequest(b *testing.B, want int, newReq func() *http.Request) {
	e := benchEngine(b)
	w := httptest.NewRecorder()
	e.ServeHTTP(w, newReq())
	if w.Code != want {
		b.Fatalf("%d %s, want %d", w.Code, w.Body, want)
	}
	b.ReportAllocs()
	start := cpuTime()
	for b.Loop() {
		e.ServeHTTP(httptest.NewRecorder(), newReq())
	}
	b.ReportMetric(float64(cpuTime()-start)/float64(b.N), "cpu-ns/op")
}

func get(path string) func() *http.Request {
	return func() *http.Request {
		req := httptest.NewRequest(http.MethodGet, path, nil)
		req.Header.Set("Authorization", "Bearer "+unitKey)
		return req
	}
}

func write(method, path, body string) func() *http.Request {
	return func() *http.Request {
		req := httptest.NewRequest(method, path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+unitKey)
		return req
	}
}

const benchProduct = `{"name":"bench product 4711","description":"a product created by the write benchmark","price":711.11,"stock":11}`

func BenchmarkCreateProduct(b *testing.B) {
	benchRequest(b, http.StatusCreated, write(http.MethodPost, "/v1/products", benchProduct))
}

func BenchmarkUpdateProduct(b *testing.B) {
	benchRequest(b, http.StatusOK, write(http.MethodPut, "/v1/products/"+someID, benchProduct))
}

func BenchmarkSearchProducts(b *testing.B) {
	benchRequest(b, http.StatusOK, get("/v1/products/search?q=item&limit=20"))
}

func BenchmarkGetProduct(b *testing.B) { benchRequest(b, http.StatusOK, get("/v1/products/"+someID)) }

func BenchmarkListProducts(b *testing.B) {
	benchRequest(b, http.StatusOK, get("/v1/products?page=3&limit=20"))
}
