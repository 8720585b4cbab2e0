package workload

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"cqrsflow/chaos/history"
)

// fakeAPI answers writes like the api would for a single product, and
// stalls the first request of each idempotency key past the client's
// timeout, so the client must retry it.
type fakeAPI struct {
	mu      sync.Mutex
	version int64
	seen    map[string]int
	stall   atomic.Int64
}

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	if r.Method == http.MethodGet {
		w.WriteHeader(404)
		return
	}
	if !json.Valid(body) {
		w.WriteHeader(400)
		return
	}
	key := r.Header.Get("Idempotency-Key")
	f.mu.Lock()
	f.seen[key]++
	first := key != "" && f.seen[key] == 1
	f.mu.Unlock()
	if first && f.stall.Load() > 0 {
		f.stall.Add(-1)
		time.Sleep(300 * time.Millisecond)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.version++
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(201)
	fmt.Fprintf(w, `{"id":"00000000-0000-4000-8000-000000000001","version":%d}`, f.version)
}

func TestKeyedWriteRetriedUnchangedAfterTimeout(t *testing.T) {
	api := &fakeAPI{seen: map[string]int{}}
	api.stall.Store(1000)
	srv := httptest.NewServer(api)
	defer srv.Close()
	var (
		mu       sync.Mutex
		attempts []history.Attempt
	)
	c := &client{cfg: Config{BaseURL: srv.URL, APIKey: "k", RunID: "t", Clients: 1, Rate: 100, MaxProducts: 5, MaxOpenOrders: 5,
		KeyedShare: 1, Timeout: 100 * time.Millisecond, MaxAttempts: 3,
		Record: func(a history.Attempt) { mu.Lock(); attempts = append(attempts, a); mu.Unlock() }},
		rng: rand.New(rand.NewPCG(1, 2)), m: newModel(), counts: &Counts{}, ops: &atomic.Int64{}, http: srv.Client()}
	o := c.createProduct(1)
	o.key = "t-k1"
	c.run(context.Background(), 1, o)
	if len(attempts) != 2 {
		t.Fatalf("%d attempts, want 2 (a timeout, then the retry): %+v", len(attempts), attempts)
	}
	a, b := attempts[0], attempts[1]
	if a.Status != 0 || !strings.HasPrefix(a.Err, "timeout") {
		t.Fatalf("first attempt: status %d err %q, want a timeout", a.Status, a.Err)
	}
	if b.Status != 201 || b.N != 2 || b.Op != a.Op {
		t.Fatalf("retry: %+v", b)
	}
	if a.IdemKey != b.IdemKey || a.Method != b.Method || a.Path != b.Path || string(a.Body) != string(b.Body) || a.IfMatch != b.IfMatch {
		t.Fatalf("the retry differs from the first attempt:\n%+v\n%+v", a, b)
	}
	if a.RequestID == b.RequestID {
		t.Fatal("attempts share a request id: the checker could not tell which one committed")
	}
	if n := c.counts.Acked.Load(); n != 1 {
		t.Fatalf("acked %d", n)
	}
}

// An unkeyed write with an ambiguous answer is not retried (a retry could
// append twice, which is allowed without a key and proves nothing).
func TestUnkeyedWriteNotRetried(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(503) }))
	defer srv.Close()
	n := 0
	c := &client{cfg: Config{BaseURL: srv.URL, Timeout: time.Second, MaxAttempts: 5, Record: func(history.Attempt) { n++ }},
		rng: rand.New(rand.NewPCG(1, 2)), m: newModel(), counts: &Counts{}, ops: &atomic.Int64{}, http: srv.Client()}
	c.run(context.Background(), 1, c.createProduct(1))
	if n != 1 || c.counts.Ambiguous.Load() != 1 {
		t.Fatalf("%d attempts, %d ambiguous", n, c.counts.Ambiguous.Load())
	}
}

// The generator draws every operation type, with valid JSON bodies, stale
// expected versions below the known one, and ids it learned.
func TestOperationMix(t *testing.T) {
	m := newModel()
	c := &client{cfg: Config{RunID: "t", MaxProducts: 40, MaxOpenOrders: 40, KeyedShare: 0.5}, rng: rand.New(rand.NewPCG(3, 4)), m: m}
	m.learn(&history.Attempt{Type: history.CreateProduct, Aggregate: "product", Status: 201, Resp: []byte(`{"id":"p1","version":5}`)})
	m.learn(&history.Attempt{Type: history.CreateOrder, Aggregate: "order", Status: 201, Resp: []byte(`{"id":"o1","version":1}`)})
	m.learn(&history.Attempt{Type: history.CreateOrder, Aggregate: "order", Status: 201, IdemKey: "k", Method: "POST", Path: "/v1/orders", Resp: []byte(`{"id":"o2","version":1}`)})
	types := map[string]int{}
	keyed, stale, inBody := 0, 0, 0
	for i := range 3000 {
		o := c.next(int64(i))
		types[o.typ]++
		if o.body != nil && !json.Valid(o.body) {
			t.Fatalf("invalid body %s", o.body)
		}
		if o.key != "" {
			keyed++
		}
		if o.typ == history.UpdateProduct && o.ifMatch > 0 && o.ifMatch < 5 {
			stale++
		}
		if o.inBody {
			inBody++
			if !strings.Contains(string(o.body), `"expected_version"`) {
				t.Fatalf("expected_version not in the body: %s", o.body)
			}
		}
		if (o.typ == history.UpdateProduct && o.id != "p1") || (o.typ == history.PayOrder && o.id != "o1" && o.id != "o2") {
			t.Fatalf("%s on unknown id %q", o.typ, o.id)
		}
	}
	for _, typ := range []string{history.CreateProduct, history.UpdateProduct, history.DeleteProduct, history.CreateOrder,
		history.PayOrder, history.ShipOrder, history.CancelOrder, history.ReadProduct, history.ReadOrder, history.SearchProducts} {
		if types[typ] == 0 {
			t.Errorf("no %s in 3000 operations: %v", typ, types)
		}
	}
	if keyed == 0 || stale == 0 || inBody == 0 {
		t.Errorf("keyed %d, stale If-Match %d, expected_version in body %d: all must occur", keyed, stale, inBody)
	}
}

func TestModelLearnsFromAnswers(t *testing.T) {
	m := newModel()
	m.learn(&history.Attempt{Type: history.CreateOrder, Aggregate: "order", Status: 201, Resp: []byte(`{"id":"o1","version":1}`)})
	m.learn(&history.Attempt{Type: history.PayOrder, Aggregate: "order", ID: "o1", Status: 409,
		Resp: []byte(`{"error":{"code":"version_conflict","details":{"current_version":3}}}`)})
	m.learn(&history.Attempt{Type: history.ShipOrder, Aggregate: "order", ID: "o1", Status: 422,
		Resp: []byte(`{"error":{"code":"illegal_transition","message":"cannot ship an order that is cancelled"}}`)})
	e := m.byID["o1"]
	if e.version != 3 || e.status != "cancelled" {
		t.Fatalf("learned version %d status %q, want 3 cancelled", e.version, e.status)
	}
	if _, open := m.counts(); open != 0 {
		t.Fatalf("a cancelled order counted open")
	}
}

// Every request carries the API key, reads too (they went without one,
// were all answered 401, and the reads invariant checked none); only a
// request with a body says it is JSON.
func TestEveryRequestCarriesTheKey(t *testing.T) {
	type seen struct{ method, auth, ctype string }
	var mu sync.Mutex
	var got []seen
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, seen{r.Method, r.Header.Get("Authorization"), r.Header.Get("Content-Type")})
		mu.Unlock()
		w.WriteHeader(404)
	}))
	defer srv.Close()
	m := newModel()
	m.learn(&history.Attempt{Type: history.CreateProduct, Aggregate: "product", Status: 201, Resp: []byte(`{"id":"p1","version":2}`)})
	c := &client{cfg: Config{BaseURL: srv.URL, APIKey: "k-123", Timeout: time.Second, MaxAttempts: 1, Record: func(history.Attempt) {}},
		rng: rand.New(rand.NewPCG(1, 2)), m: m, counts: &Counts{}, ops: &atomic.Int64{}, http: srv.Client()}
	c.run(context.Background(), 1, c.read("product"))
	c.run(context.Background(), 2, c.createProduct(2))
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 2 {
		t.Fatalf("requests: %+v", got)
	}
	for _, s := range got {
		if s.auth != "Bearer k-123" {
			t.Errorf("%s without the key: Authorization %q", s.method, s.auth)
		}
	}
	if got[0].method != http.MethodGet || got[0].ctype != "" || got[1].ctype != "application/json" {
		t.Errorf("requests %+v: want a GET without a Content-Type, then a write with one", got)
	}
}
