package query

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"

	"cqrsflow/internal/auth"
	"cqrsflow/internal/esindex"
)

// upstream is an HTTP server in Elasticsearch's place that answers the
// batch requests with answer: the hostile and broken answers a real node
// does not give on demand (the real node is in batch_integration_test).
type upstream struct {
	*httptest.Server
	mu     sync.Mutex
	bodies []string
}

func newUpstream(t *testing.T, answer func(w http.ResponseWriter, path string, body []byte)) *upstream {
	t.Helper()
	u := &upstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		u.mu.Lock()
		u.bodies = append(u.bodies, r.URL.Path+" "+string(b))
		u.mu.Unlock()
		w.Header().Set("X-Elastic-Product", "Elasticsearch")
		w.Header().Set("Content-Type", "application/json")
		answer(w, r.URL.Path, b)
	}))
	t.Cleanup(u.Close)
	return u
}

func batchHandler(t *testing.T, url string, cfg BatchConfig) *Handler {
	t.Helper()
	es, err := esindex.New(url)
	if err != nil {
		t.Fatal(err)
	}
	h, err := New(es, "t-", slog.New(slog.DiscardHandler)).Batch(cfg, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// hold takes every slot of q, as if that many batches were in flight, so
// that the reads started next queue; release sends them.
func hold(q *coalescer) {
	q.mu.Lock()
	q.busy = q.cfg.Slots
	q.mu.Unlock()
}

// waitQueued waits until n reads are queued on q.
func waitQueued(t *testing.T, q *coalescer, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		q.mu.Lock()
		got := len(q.pending)
		q.mu.Unlock()
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d reads queued, want %d", got, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// release hands the held slots on, one by one, as finishing batches do.
func release(q *coalescer) {
	for range q.cfg.Slots {
		q.next()
	}
}

type getOutcome struct {
	doc   Product
	found bool
	err   error
}

// mgetIDs returns the ids an _mget body asks for.
func mgetIDs(t *testing.T, body []byte) []string {
	t.Helper()
	var b struct {
		Docs []struct {
			Index string `json:"_index"`
			ID    string `json:"_id"`
		} `json:"docs"`
	}
	if err := json.Unmarshal(body, &b); err != nil {
		t.Fatalf("_mget body %s: %v", body, err)
	}
	var ids []string
	for _, d := range b.Docs {
		ids = append(ids, d.ID)
	}
	return ids
}

// queued starts reads (gets of ids) on a held coalescer, waits until all
// are queued and releases them as one batch; it returns each outcome.
func queuedGets(t *testing.T, h *Handler, ids []string) []getOutcome {
	t.Helper()
	hold(h.gets)
	out := make([]getOutcome, len(ids))
	var wg sync.WaitGroup
	for i, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i].found, out[i].err = getDoc(context.Background(), h, h.products, id, &out[i].doc)
		}()
	}
	waitQueued(t, h.gets, len(ids))
	release(h.gets)
	wg.Wait()
	return out
}

func TestBatchConfigValidate(t *testing.T) {
	if err := DefaultBatchConfig().Validate(); err != nil {
		t.Errorf("default: %v", err)
	}
	err := BatchConfig{MaxBatch: 0, Slots: 257}.Validate()
	if err == nil || !strings.Contains(err.Error(), "max batch 0") || !strings.Contains(err.Error(), "slots 257") {
		t.Errorf("bad config: %v, want both fields named", err)
	}
	if _, err := New(nil, "", slog.New(slog.DiscardHandler)).Batch(BatchConfig{Gets: true, Searches: true, MaxBatch: 2000, Slots: 1}, nil); err == nil {
		t.Error("Batch took a max batch of 2000")
	}
	h, err := New(nil, "", slog.New(slog.DiscardHandler)).Batch(BatchConfig{MaxBatch: 0}, nil)
	if err != nil || h.gets != nil || h.searches != nil {
		t.Errorf("nothing batched: %v, gets %v, searches %v; want the handler as it was", err, h.gets, h.searches)
	}
	h, _ = New(nil, "", slog.New(slog.DiscardHandler)).Batch(DefaultBatchConfig(), nil)
	if h.gets == nil || h.searches != nil {
		t.Errorf("default: gets %v, searches %v; want only the gets batched", h.gets, h.searches)
	}
}

// Whatever id reaches a batched get stays one JSON string of the _mget:
// the ids Elasticsearch receives are exactly the ids asked for.
func TestMgetCarriesIDsAsData(t *testing.T) {
	ids := []string{"x?refresh=true", `a"b`, `\`, "a/b", "../_cluster/health", "\x00", "\u2028", "\xff", `"},{"_index":"other","_id":"y`}
	u := newUpstream(t, func(w http.ResponseWriter, _ string, body []byte) {
		var docs []string
		for range mgetIDs(t, body) {
			docs = append(docs, `{"found":false}`)
		}
		fmt.Fprintf(w, `{"docs":[%s]}`, strings.Join(docs, ","))
	})
	h := batchHandler(t, u.URL, BatchConfig{Gets: true, Searches: true, MaxBatch: 64, Slots: 1})
	for i, o := range queuedGets(t, h, ids) {
		if o.err != nil || o.found {
			t.Errorf("%q: %+v", ids[i], o)
		}
	}
	if len(u.bodies) != 1 || !strings.HasPrefix(u.bodies[0], "/_mget ") {
		t.Fatalf("requests: %q", u.bodies)
	}
	got := mgetIDs(t, []byte(strings.TrimPrefix(u.bodies[0], "/_mget ")))
	want := append([]string(nil), ids...)
	want[7] = "\ufffd" // invalid UTF-8 is replaced, as encoding/json does
	slices.Sort(got)   // the reads queued in any order
	slices.Sort(want)
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("ids sent %q, want %q", got, want)
	}
}

// Broken answers fail the whole batch as unavailable (503), never a
// panic or an answer given to the wrong read.
func TestBrokenBatchAnswersAreUnavailable(t *testing.T) {
	for name, answer := range map[string]func(w http.ResponseWriter){
		"fewer parts":    func(w http.ResponseWriter) { io.WriteString(w, `{"docs":[{"found":false}]}`) },
		"more parts":     func(w http.ResponseWriter) { io.WriteString(w, `{"docs":[{},{},{},{}]}`) },
		"no docs":        func(w http.ResponseWriter) { io.WriteString(w, `{}`) },
		"docs not array": func(w http.ResponseWriter) { io.WriteString(w, `{"docs":{"a":1}}`) },
		"not JSON":       func(w http.ResponseWriter) { io.WriteString(w, `{"docs":[{"found":tru`) },
		"html":           func(w http.ResponseWriter) { io.WriteString(w, `<html>proxy error</html>`) },
		"429": func(w http.ResponseWriter) {
			w.WriteHeader(http.StatusTooManyRequests)
			io.WriteString(w, `{"error":"busy"}`)
		},
		"503": func(w http.ResponseWriter) {
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, `{"error":"no master"}`)
		},
	} {
		t.Run(name, func(t *testing.T) {
			u := newUpstream(t, func(w http.ResponseWriter, _ string, _ []byte) { answer(w) })
			h := batchHandler(t, u.URL, BatchConfig{Gets: true, Searches: true, MaxBatch: 64, Slots: 1})
			for i, o := range queuedGets(t, h, []string{"a", "b"}) {
				if !errors.Is(o.err, esindex.ErrUnavailable) || o.found {
					t.Errorf("read %d: %+v, want unavailable", i, o)
				}
			}
		})
	}
}

// A document's own error in an _mget answers that read alone: a missing
// index is not found, any other error unavailable; a found document
// without _source is the read's error.
func TestMgetDocumentErrorsStayWithTheirRead(t *testing.T) {
	u := newUpstream(t, func(w http.ResponseWriter, _ string, body []byte) {
		var docs []string
		for _, id := range mgetIDs(t, body) {
			switch id {
			case "noindex":
				docs = append(docs, `{"_id":"noindex","error":{"type":"index_not_found_exception","reason":"no such index"}}`)
			case "shard":
				docs = append(docs, `{"_id":"shard","error":{"type":"no_shard_available_action_exception","reason":"No shard available"}}`)
			case "nosource":
				docs = append(docs, `{"_id":"nosource","found":true}`)
			case "badsource":
				docs = append(docs, `{"_id":"badsource","found":true,"_source":{"version":"three"}}`)
			default:
				docs = append(docs, fmt.Sprintf(`{"_id":%q,"found":true,"_source":{"id":%q,"version":2}}`, id, id))
			}
		}
		fmt.Fprintf(w, `{"docs":[%s]}`, strings.Join(docs, ","))
	})
	h := batchHandler(t, u.URL, BatchConfig{Gets: true, Searches: true, MaxBatch: 64, Slots: 1})
	out := queuedGets(t, h, []string{"ok1", "noindex", "shard", "nosource", "badsource", "ok2"})
	if o := out[0]; o.err != nil || !o.found || o.doc.ID != "ok1" {
		t.Errorf("ok1: %+v", o)
	}
	if o := out[1]; o.err != nil || o.found {
		t.Errorf("missing index: %+v, want not found", o)
	}
	if o := out[2]; !errors.Is(o.err, esindex.ErrUnavailable) || !strings.Contains(o.err.Error(), "no_shard_available") {
		t.Errorf("shard error: %+v, want unavailable naming it", o)
	}
	if o := out[3]; o.err == nil || errors.Is(o.err, esindex.ErrUnavailable) || !errors.Is(o.err, errShape) {
		t.Errorf("found without _source: %+v, want a shape error", o)
	}
	if o := out[4]; o.err == nil || !errors.Is(o.err, errShape) {
		t.Errorf("_source of the wrong shape: %+v, want a shape error", o)
	}
	if o := out[5]; o.err != nil || !o.found || o.doc.ID != "ok2" {
		t.Errorf("ok2: %+v", o)
	}
}

// An _msearch Elasticsearch refuses as a whole is sent again search by
// search; each _msearch line is one search, whatever its body holds.
func TestRefusedMsearchFallsBackToOneByOne(t *testing.T) {
	u := newUpstream(t, func(w http.ResponseWriter, _ string, body []byte) {
		var lines []string
		sc := bufio.NewScanner(bytes.NewReader(body))
		for sc.Scan() {
			lines = append(lines, sc.Text())
		}
		if len(lines)%2 != 0 {
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprintf(w, `{"error":"odd number of lines: %d"}`, len(lines))
			return
		}
		var parts []string
		for i := 1; i < len(lines); i += 2 {
			switch {
			case strings.Contains(lines[i], "refuse"):
				w.WriteHeader(http.StatusBadRequest)
				io.WriteString(w, `{"error":{"type":"parsing_exception"},"status":400}`)
				return
			case strings.Contains(lines[i], "busy"):
				parts = append(parts, `{"error":{"type":"es_rejected_execution_exception"},"status":429}`)
			case strings.Contains(lines[i], "gone"):
				parts = append(parts, `{"error":{"type":"index_not_found_exception"},"status":404}`)
			default:
				parts = append(parts, `{"hits":{"total":{"value":1},"hits":[{"_source":{"id":"p","version":1}}]},"status":200}`)
			}
		}
		fmt.Fprintf(w, `{"responses":[%s]}`, strings.Join(parts, ","))
	})
	h := batchHandler(t, u.URL, BatchConfig{Gets: true, Searches: true, MaxBatch: 64, Slots: 1})
	bodies := []string{`{"q":"ok"}`, `{"q":"refuse"}`, "{\n\"q\": \"multi\nline\"\n}", `{"q":"busy"}`, `{"q":"gone"}`, "{\"q\":\"with \\n escaped\"}"}
	hold(h.searches)
	type outcome struct {
		page Page[Product]
		err  error
	}
	out := make([]outcome, len(bodies))
	var wg sync.WaitGroup
	for i, b := range bodies {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i].page, out[i].err = search[Product](context.Background(), h, h.products, []byte(b), Paging{Page: 1, Limit: 20})
		}()
	}
	waitQueued(t, h.searches, len(bodies)-1) // bodies[2] is refused before it queues
	release(h.searches)
	wg.Wait()
	for _, i := range []int{0, 5} {
		if o := out[i]; o.err != nil || o.page.Total != 1 || len(o.page.Items) != 1 {
			t.Errorf("search %d: %+v", i, o)
		}
	}
	if o := out[1]; o.err == nil || errors.Is(o.err, esindex.ErrUnavailable) {
		t.Errorf("refused search: %v, want its own error", o.err)
	}
	if o := out[2]; o.err == nil || !strings.Contains(o.err.Error(), "body") {
		t.Errorf("a body that is not JSON with a raw newline: %v, want refused before sending", o.err)
	}
	if o := out[3]; !errors.Is(o.err, esindex.ErrUnavailable) {
		t.Errorf("429 part: %v, want unavailable", o.err)
	}
	if o := out[4]; o.err != nil || o.page.Total != 0 {
		t.Errorf("missing index: %+v, want an empty page", o)
	}
	// One batch of five (the sixth was refused before it), refused, then
	// each of the five alone.
	if n := len(u.bodies); n != 6 {
		t.Errorf("%d requests, want 6: %q", n, u.bodies)
	}
}

// With Elasticsearch unreachable every batched route is a 503.
func TestBatchedElasticsearchDownIs503(t *testing.T) {
	gin.SetMode(gin.TestMode)
	r := gin.New()
	r.Use(asPrincipal(&auth.Principal{ID: "svc", Scopes: auth.DefaultScopes}))
	Register(r, batchHandler(t, "http://127.0.0.1:1", BatchConfig{Gets: true, Searches: true, MaxBatch: 64, Slots: 1}))
	for _, path := range []string{
		"/v1/products/" + pid, "/v1/products/" + pid + "?min_version=3&wait=100ms", "/v1/products?page=2&limit=100",
		"/v1/products/search?q=lamp&sort=-price&in_stock=true&min_price=1", "/v1/orders/" + oid,
		"/v1/orders?user_id=u1&status=paid",
	} {
		w, b := get(t, r, path)
		if w.Code != http.StatusServiceUnavailable || b.Error.Code != "dependency_unavailable" {
			t.Errorf("%s: status %d code %q, want 503 dependency_unavailable", path, w.Code, b.Error.Code)
		}
	}
}

// A read whose context is over before it queues takes no slot: with one
// slot, the reads after it are still sent (it once kept the slot for
// ever, and every later read timed out).
func TestAReadGoneBeforeItQueuesTakesNoSlot(t *testing.T) {
	u := newUpstream(t, func(w http.ResponseWriter, _ string, body []byte) {
		var docs []string
		for _, id := range mgetIDs(t, body) {
			docs = append(docs, fmt.Sprintf(`{"found":true,"_source":{"id":%q,"version":1}}`, id))
		}
		fmt.Fprintf(w, `{"docs":[%s]}`, strings.Join(docs, ","))
	})
	h := batchHandler(t, u.URL, BatchConfig{Gets: true, Searches: true, MaxBatch: 64, Slots: 1})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var d Product
	if _, err := getDoc(ctx, h, h.products, "gone", &d); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled read: %v, want context.Canceled", err)
	}
	h.gets.mu.Lock()
	busy, queued := h.gets.busy, len(h.gets.pending)
	h.gets.mu.Unlock()
	if busy != 0 || queued != 0 {
		t.Errorf("after a cancelled read: %d slots busy, %d queued; want none", busy, queued)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if found, err := getDoc(ctx, h, h.products, "next", &d); err != nil || !found || d.ID != "next" {
		t.Fatalf("the read after it: found %v, %v, %+v", found, err, d)
	}
	if len(u.bodies) != 1 || strings.Contains(u.bodies[0], "gone") {
		t.Errorf("requests %q, want one without the cancelled read", u.bodies)
	}
}

// A batch starts at once when nothing is in flight; beside a batch in
// flight only on a free slot and for a queue of MaxBatch/8 reads.
func TestMayStart(t *testing.T) {
	for _, c := range []struct {
		slots, busy, others, pending int
		want                         bool
	}{
		{slots: 2, busy: 0, pending: 1, want: true},             // idle: at once
		{slots: 1, busy: 1, pending: 50, want: false},           // the only slot is busy
		{slots: 2, busy: 1, pending: 7, want: false},            // a small queue waits for the batch in flight
		{slots: 2, busy: 1, pending: 8, want: true},             // a queue worth a request of its own
		{slots: 2, busy: 2, pending: 64, want: false},           // every slot busy
		{slots: 2, busy: 1, others: 1, pending: 1, want: true},  // the last batch to end takes any queue
		{slots: 2, busy: 2, others: 1, pending: 3, want: false}, // another still in flight: 3 wait for it
		{slots: 2, busy: 2, others: 1, pending: 9, want: true},
	} {
		q := &coalescer{cfg: BatchConfig{MaxBatch: 64, Slots: c.slots}, busy: c.busy, pending: make([]*readCall, c.pending)}
		if got := q.mayStartLocked(c.others); got != c.want {
			t.Errorf("%+v: %v, want %v", c, got, c.want)
		}
	}
}

// Beside a batch in flight, reads queue until there are MaxBatch/8 of
// them, then go as one batch on the second slot; none is left behind.
func TestASecondSlotOpensForAFullEnoughQueue(t *testing.T) {
	u := newUpstream(t, func(w http.ResponseWriter, _ string, body []byte) {
		var docs []string
		for _, id := range mgetIDs(t, body) {
			docs = append(docs, fmt.Sprintf(`{"found":true,"_source":{"id":%q,"version":1}}`, id))
		}
		fmt.Fprintf(w, `{"docs":[%s]}`, strings.Join(docs, ","))
	})
	h := batchHandler(t, u.URL, BatchConfig{Gets: true, MaxBatch: 16, Slots: 2}) // opens for 2 queued
	q := h.gets
	q.mu.Lock()
	q.busy = 1 // a batch in flight that has not ended
	q.mu.Unlock()
	done := make(chan getOutcome, 3)
	get := func(id string) {
		var o getOutcome
		o.found, o.err = getDoc(context.Background(), h, h.products, id, &o.doc)
		done <- o
	}
	go get("a")
	waitQueued(t, q, 1)
	time.Sleep(20 * time.Millisecond)
	q.mu.Lock()
	busy, queued := q.busy, len(q.pending)
	q.mu.Unlock()
	if busy != 1 || queued != 1 || len(u.bodies) != 0 {
		t.Fatalf("one read beside a batch in flight: %d busy, %d queued, %d requests; want it to wait", busy, queued, len(u.bodies))
	}
	go get("b") // the queue reaches MaxBatch/8 = 2: the second slot opens
	for range 2 {
		if o := <-done; o.err != nil || !o.found {
			t.Errorf("%+v", o)
		}
	}
	if len(u.bodies) != 1 {
		t.Errorf("requests %q, want one batch of a and b", u.bodies)
	}
	go get("c") // queues behind the batch still in flight
	waitQueued(t, q, 1)
	q.next() // that batch ends: it takes c whatever the queue's length
	if o := <-done; o.err != nil || !o.found || o.doc.ID != "c" {
		t.Errorf("c: %+v", o)
	}
	waitIdle(t, q)
}

// waitIdle waits until no batch of q is in flight.
func waitIdle(t *testing.T, q *coalescer) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		q.mu.Lock()
		busy := q.busy
		q.mu.Unlock()
		if busy == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d slots still busy", busy)
		}
		time.Sleep(time.Millisecond)
	}
}
