//go:build integration

package query

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/elastic/go-elasticsearch/v8"
	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"cqrsflow/internal/esindex"
	"cqrsflow/internal/projection/products"
	"cqrsflow/internal/projector"
	"cqrsflow/internal/testenv"
)

// batchFixture is a products read model on the real Elasticsearch with
// p1 (version 3), p2 (deleted) and p3..p9, and a Handler batching reads.
type batchFixture struct {
	es     *elasticsearch.Client
	prefix string
	h      *Handler
	reg    *prometheus.Registry
}

const (
	bp1 = "30000000-0000-4000-8000-000000000001"
	bp2 = "30000000-0000-4000-8000-000000000002"
	bpX = "30000000-0000-4000-8000-0000000000ff" // never indexed
)

func bpID(i int) string { return fmt.Sprintf("30000000-0000-4000-8000-%012d", i) }

func newBatchFixture(t *testing.T, cfg BatchConfig) *batchFixture {
	t.Helper()
	es := testenv.Elasticsearch(t)
	prefix := testenv.IndexPrefix(t) + "-"
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := projector.EnsureReadModel(ctx, es, prefix, products.Projection); err != nil {
		t.Fatal(err)
	}
	var ops []esindex.Op
	for i := 1; i <= 9; i++ {
		d := products.Doc{Name: "item " + bpID(i), Description: "an item", Price: 1, Stock: 1}
		d.ID, d.Version, d.Deleted = bpID(i), 3, i == 2
		ops = append(ops, esindex.Op{Index: prefix + "products", ID: d.ID, Version: d.Version, Doc: mustJSON(t, d)})
	}
	res, err := esindex.Bulk(ctx, es, ops, "true")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if r.Err != "" || r.Conflict {
			t.Fatalf("indexing: %+v", r)
		}
	}
	reg := prometheus.NewRegistry()
	h, err := New(es, prefix, slog.New(slog.DiscardHandler)).Batch(cfg, reg)
	if err != nil {
		t.Fatal(err)
	}
	return &batchFixture{es: es, prefix: prefix, h: h, reg: reg}
}

// batchSizes returns the observed reads per batch of kind: count, sum.
func (f *batchFixture) batchSizes(t *testing.T, kind string) (uint64, float64) {
	t.Helper()
	m := f.metric(t, "cqrsflow_read_batch_reads", kind)
	return m.GetHistogram().GetSampleCount(), m.GetHistogram().GetSampleSum()
}

// fallbacks returns the batches of kind sent again read by read.
func (f *batchFixture) fallbacks(t *testing.T, kind string) float64 {
	t.Helper()
	return f.metric(t, "cqrsflow_read_batch_fallbacks_total", kind).GetCounter().GetValue()
}

// metric returns the sample of name with label kind (nil if none).
func (f *batchFixture) metric(t *testing.T, name, kind string) *dto.Metric {
	t.Helper()
	mfs, err := f.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if labelOf(m, "kind") == kind {
				return m
			}
		}
	}
	return nil
}

func labelOf(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// Gets queued together go out as one _mget, and each keeps its own
// outcome: found, deleted, not found, missing index.
func TestBatchedGetsKeepTheirOwnOutcome(t *testing.T) {
	f := newBatchFixture(t, BatchConfig{Gets: true, Searches: true, MaxBatch: 64, Slots: 1})
	q := f.h.gets
	hold(q)
	reads := []struct{ index, id string }{
		{f.h.products, bp1}, {f.h.products, bp2}, {f.h.products, bpX},
		{f.prefix + "nosuchindex", bp1}, {f.h.products, bpID(7)},
	}
	out := make([]getOutcome, len(reads))
	var wg sync.WaitGroup
	for i, r := range reads {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i].found, out[i].err = getDoc(context.Background(), f.h, r.index, r.id, &out[i].doc)
		}()
	}
	waitQueued(t, q, len(reads))
	release(q)
	wg.Wait()
	for i, o := range out {
		if o.err != nil {
			t.Errorf("read %d (%v): %v", i, reads[i], o.err)
		}
	}
	if !out[0].found || out[0].doc.ID != bp1 || out[0].doc.Version != 3 || out[0].doc.Deleted {
		t.Errorf("p1: %+v", out[0])
	}
	if !out[1].found || !out[1].doc.Deleted {
		t.Errorf("p2 (deleted): %+v", out[1])
	}
	if out[2].found || out[3].found {
		t.Errorf("missing document / missing index read as found: %+v %+v", out[2], out[3])
	}
	if !out[4].found || out[4].doc.ID != bpID(7) {
		t.Errorf("p7: %+v", out[4])
	}
	if n, sum := f.batchSizes(t, "get"); n != 1 || sum != float64(len(reads)) || f.fallbacks(t, "get") != 0 {
		t.Errorf("get batches: %d holding %v reads (%v fallbacks), want 1 holding %d", n, sum, f.fallbacks(t, "get"), len(reads))
	}
}

// Searches queued together go out as one _msearch; a search
// Elasticsearch refuses fails alone, a missing index is an empty page.
func TestBatchedSearchesKeepTheirOwnOutcome(t *testing.T) {
	f := newBatchFixture(t, BatchConfig{Gets: true, Searches: true, MaxBatch: 64, Slots: 1})
	q := f.h.searches
	hold(q)
	pg := Paging{Page: 1, Limit: 20}
	pretty := "{\n  \"query\": {\"term\": {\"id\": \"" + bpID(5) + "\"}},\n  \"size\": 5\n}"
	reads := []struct {
		index string
		body  []byte
	}{
		{f.h.products, ProductSearchBody(SearchParams{Q: "item", Paging: pg})},
		{f.prefix + "nosuchindex", ProductListBody(pg)},
		{f.h.products, []byte(`{"query":{"no_such_query":{}}}`)},
		{f.h.products, []byte(pretty)},
		{f.h.products, ProductListBody(pg)},
	}
	type outcome struct {
		page Page[Product]
		err  error
	}
	out := make([]outcome, len(reads))
	var wg sync.WaitGroup
	for i, r := range reads {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i].page, out[i].err = search[Product](context.Background(), f.h, r.index, r.body, pg)
		}()
	}
	waitQueued(t, q, len(reads))
	release(q)
	wg.Wait()
	if o := out[0]; o.err != nil || o.page.Total != 8 || len(o.page.Items) != 8 {
		t.Errorf("search: total %d, %d items, err %v; want the 8 live products", o.page.Total, len(o.page.Items), o.err)
	}
	if o := out[1]; o.err != nil || o.page.Total != 0 || len(o.page.Items) != 0 {
		t.Errorf("missing index: %+v, want an empty page", o)
	}
	if o := out[2]; o.err == nil || errors.Is(o.err, esindex.ErrUnavailable) || !strings.Contains(o.err.Error(), "400") {
		t.Errorf("refused search: %v, want its own 400 error (not unavailable)", o.err)
	}
	if o := out[3]; o.err != nil || len(o.page.Items) != 1 || o.page.Items[0].ID != bpID(5) {
		t.Errorf("multi-line body: %+v", o)
	}
	if o := out[4]; o.err != nil || o.page.Total != 8 {
		t.Errorf("list: %+v", o)
	}
	// Elasticsearch refuses an _msearch with a body it cannot parse as a
	// whole (400), so the batch was sent again read by read.
	if n, sum := f.batchSizes(t, "search"); n != 1 || sum != float64(len(reads)) {
		t.Errorf("search batches: %d holding %v reads, want 1 holding %d", n, sum, len(reads))
	}
	if got := f.fallbacks(t, "search"); got != 1 {
		t.Errorf("search fallbacks: %v, want 1", got)
	}
}

// More reads than MaxBatch are split into batches of at most MaxBatch,
// oldest first, and every read is answered.
func TestBatchesAreBoundedByMaxBatch(t *testing.T) {
	f := newBatchFixture(t, BatchConfig{Gets: true, Searches: true, MaxBatch: 3, Slots: 1})
	q := f.h.gets
	hold(q)
	const n = 10
	out := make([]getOutcome, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i].found, out[i].err = getDoc(context.Background(), f.h, f.h.products, bpID(i%9+1), &out[i].doc)
		}()
	}
	waitQueued(t, q, n)
	release(q)
	wg.Wait()
	for i, o := range out {
		if o.err != nil || !o.found || o.doc.ID != bpID(i%9+1) {
			t.Errorf("read %d: %+v", i, o)
		}
	}
	if got, sum := f.batchSizes(t, "get"); got != 4 || sum != n {
		t.Errorf("%d batches holding %v reads, want 4 (3+3+3+1) holding %d", got, sum, n)
	}
	// The last batch hands its slot on after it has answered its reads
	// (run's deferred next), so the slot frees just after they return.
	waitIdle(t, q)
}

// A caller that gives up while queued gets its context's error at once
// and is left out of the batch; the others are answered.
func TestAQueuedReadLeavesWithItsContext(t *testing.T) {
	f := newBatchFixture(t, BatchConfig{Gets: true, Searches: true, MaxBatch: 64, Slots: 1})
	q := f.h.gets
	hold(q)
	ctx, cancel := context.WithCancel(context.Background())
	gone := make(chan error, 1)
	go func() {
		var d Product
		_, err := getDoc(ctx, f.h, f.h.products, bp1, &d)
		gone <- err
	}()
	stay := make(chan getOutcome, 1)
	go func() {
		var o getOutcome
		o.found, o.err = getDoc(context.Background(), f.h, f.h.products, bpID(3), &o.doc)
		stay <- o
	}()
	waitQueued(t, q, 2)
	cancel()
	select {
	case err := <-gone:
		if !errors.Is(err, context.Canceled) || !errors.Is(err, esindex.ErrUnavailable) {
			t.Errorf("cancelled read: %v, want context.Canceled (unavailable)", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a cancelled read still waits for a slot")
	}
	release(q)
	if o := <-stay; o.err != nil || !o.found || o.doc.ID != bpID(3) {
		t.Errorf("the read that stayed: %+v", o)
	}
	if n, sum := f.batchSizes(t, "get"); n != 1 || sum != 1 {
		t.Errorf("%d batches holding %v reads, want 1 holding only the read that stayed", n, sum)
	}
}

// Under real concurrency through the routes every answer is the document
// asked for (no answer goes to another read of the batch), reads do get
// batched, and an idle read afterwards goes alone.
func TestConcurrentReadsThroughTheRoutes(t *testing.T) {
	f := newBatchFixture(t, BatchConfig{Gets: true, Searches: true, MaxBatch: 64, Slots: 2})
	gin.SetMode(gin.TestMode)
	r := gin.New()
	RegisterProducts(r, f.h)
	const clients, rounds = 48, 20
	var wg sync.WaitGroup
	errs := make(chan string, clients*rounds)
	start := make(chan struct{})
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for i := range rounds {
				id := bpID((c+i)%9 + 1)
				path := "/v1/products/" + id
				if i%4 == 3 {
					path = "/v1/products/search?q=item&limit=20"
				}
				w := httptest.NewRecorder()
				r.ServeHTTP(w, httptest.NewRequest(http.MethodGet, path, nil))
				switch {
				case i%4 == 3:
					if w.Code != 200 || !strings.Contains(w.Body.String(), `"total":8`) {
						errs <- fmt.Sprintf("%s: %d %s", path, w.Code, w.Body)
					}
				case id == bp2:
					if w.Code != 404 {
						errs <- fmt.Sprintf("%s (deleted): %d", path, w.Code)
					}
				case w.Code != 200 || !strings.Contains(w.Body.String(), `"id":"`+id+`"`):
					errs <- fmt.Sprintf("%s: %d %s", path, w.Code, w.Body)
				}
			}
		}()
	}
	close(start)
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	n, sum := f.batchSizes(t, "get")
	if want := float64(clients * rounds * 3 / 4); sum != want {
		t.Errorf("gets counted in batches: %v, want %v", sum, want)
	}
	if float64(n) >= sum {
		t.Errorf("%d get batches for %v gets: nothing was batched", n, sum)
	}
	t.Logf("%v gets in %d _mget requests", sum, n)
	// Idle: one read, one request of its own, no wait.
	w := httptest.NewRecorder()
	r.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/v1/products/"+bp1, nil))
	if n2, sum2 := f.batchSizes(t, "get"); w.Code != 200 || n2 != n+1 || sum2 != sum+1 {
		t.Errorf("idle get: %d; batches %d→%d, reads %v→%v", w.Code, n, n2, sum, sum2)
	}
}

// Read-your-writes polls through the batches: a get waiting for a
// version the read model reaches later is answered with it.
func TestBatchedReadYourWrites(t *testing.T) {
	f := newBatchFixture(t, BatchConfig{Gets: true, Searches: true, MaxBatch: 64, Slots: 1})
	gin.SetMode(gin.TestMode)
	r := gin.New()
	RegisterProducts(r, f.h)
	go func() {
		time.Sleep(300 * time.Millisecond)
		d := products.Doc{Name: "item 4 v4", Price: 2, Stock: 1}
		d.ID, d.Version = bpID(4), 4
		_, _ = esindex.Bulk(context.Background(), f.es, []esindex.Op{{Index: f.prefix + "products", ID: d.ID, Version: 4, Doc: mustJSON(t, d)}}, "")
	}()
	w := httptest.NewRecorder()
	r.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/v1/products/"+bpID(4)+"?min_version=4&wait=5s", nil))
	if w.Code != 200 || w.Header().Get(HeaderVersion) != "4" || w.Header().Get(HeaderStale) != "" {
		t.Errorf("read-your-writes: %d, version %q, stale %q: %s", w.Code, w.Header().Get(HeaderVersion), w.Header().Get(HeaderStale), w.Body)
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
