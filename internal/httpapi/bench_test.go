package httpapi

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
	"github.com/prometheus/client_golang/prometheus"

	"cqrsflow/internal/eventschema"
	"cqrsflow/internal/query"
)

// The hot routes through the whole engine as the api binary builds it:
// every middleware, the default limits (the per-principal one off, as in
// `bench write`), the access log at the default level (JSON, discarded),
// metrics. The event store is foldingStore and Elasticsearch a canned
// answer from memory, so what is measured is the api's own work.

// canned answers like Elasticsearch: a page of 20 product hits for a
// search, one product for a GET.
type canned struct{ search, doc []byte }

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

func source(i int) string {
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
		fmt.Fprintf(&s, `{"_index":"products_v1","_id":"0193a3f0-1c2d-7e4f-8a9b-0c1d2e3f%04x","_score":0.0952,"_source":%s,"sort":[0.0952,"0193a3f0-1c2d-7e4f-8a9b-0c1d2e3f%04x"]}`,
			i, source(i), i)
	}
	s.WriteString(`]}}`)
	doc := `{"_index":"products_v1","_id":"` + someID + `","_version":3,"_seq_no":7,"_primary_term":1,"found":true,"_source":` + source(7) + `}`
	return canned{search: []byte(s.String()), doc: []byte(doc)}
}

func benchEngine(b *testing.B) *gin.Engine {
	b.Helper()
	schemas, err := eventschema.Load()
	if err != nil {
		b.Fatal(err)
	}
	es, err := elasticsearch.NewClient(elasticsearch.Config{Addresses: []string{"http://es.invalid:9200"}, Transport: cannedES()})
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
