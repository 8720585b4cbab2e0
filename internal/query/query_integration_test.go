//go:build integration

package query_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/elastic/go-elasticsearch/v8"
	"github.com/gin-gonic/gin"

	"cqrsflow/internal/auth"
	"cqrsflow/internal/esindex"
	"cqrsflow/internal/projection/orders"
	"cqrsflow/internal/projection/products"
	"cqrsflow/internal/projector"
	"cqrsflow/internal/query"
	"cqrsflow/internal/testenv"
)

// Ids as the api issues them (UUIDs), in the order of their names, so
// ties sorted by id stay in that order.
const (
	P1, P2, P3, P4 = "10000000-0000-4000-8000-000000000001", "10000000-0000-4000-8000-000000000002",
		"10000000-0000-4000-8000-000000000003", "10000000-0000-4000-8000-000000000004"
	NOPE       = "10000000-0000-4000-8000-0000000000ff"
	O1, O2, O9 = "20000000-0000-4000-8000-000000000001", "20000000-0000-4000-8000-000000000002",
		"20000000-0000-4000-8000-000000000009"
)

type fixture struct {
	es     *elasticsearch.Client
	prefix string
	srv    http.Handler
}

func setup(t *testing.T) *fixture {
	t.Helper()
	es := testenv.Elasticsearch(t)
	prefix := testenv.IndexPrefix(t) + "-"
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, p := range []projector.Projection{products.Projection, orders.Projection} {
		if _, err := projector.EnsureReadModel(ctx, es, prefix, p); err != nil {
			t.Fatal(err)
		}
	}
	f := &fixture{es: es, prefix: prefix}
	// A service key's principal (read, not bound to users).
	f.srv = f.as(&auth.Principal{ID: "svc", Scopes: auth.DefaultScopes})
	return f
}

// as returns the read routes as principal p calls them (the api's
// authentication sets the principal).
func (f *fixture) as(p *auth.Principal) http.Handler {
	gin.SetMode(gin.TestMode)
	r := gin.New()
	r.Use(func(c *gin.Context) { auth.Set(c, p) })
	query.Register(r, query.New(f.es, f.prefix, slog.New(slog.NewTextHandler(io.Discard, nil))))
	return r
}

func (f *fixture) index(t *testing.T, alias, id string, version int64, doc any, refresh bool) {
	t.Helper()
	b, _ := json.Marshal(doc)
	r := ""
	if refresh {
		r = "true"
	}
	res, err := esindex.Bulk(context.Background(), f.es, []esindex.Op{{Index: f.prefix + alias, ID: id, Version: version, Doc: b}}, r)
	if err != nil || res[0].Err != "" || res[0].Conflict {
		t.Fatalf("indexing %s: %v %+v", id, err, res)
	}
}

func product(id, name, desc string, price float64, stock, version int64, deleted bool, created time.Time) products.Doc {
	d := products.Doc{Name: name, Description: desc, Price: price, Stock: stock}
	d.ID, d.Version, d.Deleted, d.CreatedAt, d.UpdatedAt, d.RecordedAt, d.LastEventID = id, version, deleted, created, created, created, "e"
	return d
}

func (f *fixture) get(t *testing.T, path string, v any) *httptest.ResponseRecorder {
	t.Helper()
	w := httptest.NewRecorder()
	f.srv.ServeHTTP(w, httptest.NewRequest(http.MethodGet, path, nil))
	if v != nil && w.Code == 200 {
		if err := json.Unmarshal(w.Body.Bytes(), v); err != nil {
			t.Fatalf("%s: decoding %s: %v", path, w.Body, err)
		}
	}
	return w
}

func ids(items []query.Product) []string {
	out := []string{}
	for _, p := range items {
		out = append(out, p.ID)
	}
	return out
}

func TestQueriesAgainstElasticsearch(t *testing.T) {
	f := setup(t)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	f.index(t, "products", P1, 1, product(P1, "Desk lamp", "Warm light for reading", 24.5, 3, 1, false, t0), false)
	f.index(t, "products", P2, 2, product(P2, "Wireless mouse", "Small and quiet", 19.9, 0, 2, false, t0.Add(time.Minute)), false)
	f.index(t, "products", P3, 1, product(P3, "Keyboard", "Mechanical, wireless and quiet", 79, 10, 1, false, t0.Add(2*time.Minute)), false)
	f.index(t, "products", P4, 3, product(P4, "Old lamp", "Removed from the shop, quiet", 5, 1, 3, true, t0.Add(3*time.Minute)), true)

	var p query.Product
	if w := f.get(t, "/v1/products/"+P2, &p); w.Code != 200 || p.Name != "Wireless mouse" || p.Version != 2 || p.Price != 19.9 || w.Header().Get(query.HeaderVersion) != "2" {
		t.Errorf("get p2: %d %s", w.Code, w.Body)
	}
	if w := f.get(t, "/v1/products/"+P4, nil); w.Code != 404 {
		t.Errorf("deleted product: status %d, want 404", w.Code)
	}
	if w := f.get(t, "/v1/products/"+NOPE, nil); w.Code != 404 {
		t.Errorf("missing product: status %d, want 404", w.Code)
	}

	// Read-your-writes: reached → 200 without stale; not reached → current doc + stale header after the wait.
	if w := f.get(t, "/v1/products/"+P2+"?min_version=2&wait=1s", &p); w.Code != 200 || w.Header().Get(query.HeaderStale) != "" {
		t.Errorf("min_version reached: %d stale=%q", w.Code, w.Header().Get(query.HeaderStale))
	}
	start := time.Now()
	w := f.get(t, "/v1/products/"+P2+"?min_version=5&wait=300ms", &p)
	if w.Code != 200 || w.Header().Get(query.HeaderStale) != "true" || w.Header().Get(query.HeaderVersion) != "2" || p.Version != 2 {
		t.Errorf("min_version not reached: %d headers %v", w.Code, w.Header())
	}
	if el := time.Since(start); el < 300*time.Millisecond || el > 3*time.Second {
		t.Errorf("wait took %s, want about 300ms", el)
	}
	go func() {
		time.Sleep(200 * time.Millisecond)
		f.index(t, "products", P2, 3, product(P2, "Wireless mouse 2", "Small and quiet", 18, 0, 3, false, t0.Add(time.Minute)), false)
	}()
	if w := f.get(t, "/v1/products/"+P2+"?min_version=3&wait=5s", &p); w.Code != 200 || p.Version != 3 || w.Header().Get(query.HeaderStale) != "" {
		t.Errorf("waiting for a write: %d version %d stale %q", w.Code, p.Version, w.Header().Get(query.HeaderStale))
	}
	time.Sleep(1500 * time.Millisecond) // default refresh interval: the update becomes searchable

	var page query.Page[query.Product]
	if w := f.get(t, "/v1/products?limit=2", &page); w.Code != 200 || page.Total != 3 || !slices.Equal(ids(page.Items), []string{P1, P2}) {
		t.Errorf("list page 1: %d %s", w.Code, w.Body)
	}
	if f.get(t, "/v1/products?limit=2&page=2", &page); !slices.Equal(ids(page.Items), []string{P3}) {
		t.Errorf("list page 2: %v", ids(page.Items))
	}
	search := func(qs string) []string {
		t.Helper()
		var pg query.Page[query.Product]
		if w := f.get(t, "/v1/products/search?"+qs, &pg); w.Code != 200 {
			t.Fatalf("search %s: %d %s", qs, w.Code, w.Body)
		}
		return ids(pg.Items)
	}
	for _, tc := range []struct {
		qs   string
		want []string
	}{
		{"q=reading", []string{P1}},              // a word of the description
		{"q=wireless", []string{P2, P3}},         // name match ranks first
		{"q=quiet&sort=price", []string{P2, P3}}, // deleted p4 hidden
		{"q=quiet&sort=-price", []string{P3, P2}},
		{"q=quiet&in_stock=true", []string{P3}},
		{"q=quiet&max_price=20", []string{P2}},
		{"q=quiet&min_price=20&max_price=100", []string{P3}},
		{"q=lamp", []string{P1}},
		{"q=" + `%22%7D%7D%5D` + "", []string{}}, // JSON-looking text is just text
	} {
		if got := search(tc.qs); !slices.Equal(got, tc.want) {
			t.Errorf("search %s = %v, want %v", tc.qs, got, tc.want)
		}
	}

	// Orders.
	for i, st := range []string{"created", "paid", "shipped"} {
		d := orders.Doc{UserID: "u1", ProductID: "p1", Quantity: int64(i + 1), TotalPrice: 10, Status: st}
		d.ID, d.Version, d.CreatedAt = fmt.Sprintf("20000000-0000-4000-8000-%012d", i), int64(i+1), t0.Add(time.Duration(i)*time.Minute)
		f.index(t, "orders", d.ID, d.Version, d, i == 2)
	}
	other := orders.Doc{UserID: "u2", Status: "paid"}
	other.ID, other.Version = O9, 1
	f.index(t, "orders", O9, 1, other, true)
	var o query.Order
	if w := f.get(t, "/v1/orders/"+O1, &o); w.Code != 200 || o.Status != "paid" || o.Quantity != 2 || o.UserID != "u1" {
		t.Errorf("get order: %d %s", w.Code, w.Body)
	}
	var op query.Page[query.Order]
	if f.get(t, "/v1/orders?user_id=u1", &op); op.Total != 3 || op.Items[0].ID != O2 {
		t.Errorf("orders of u1: %+v", op)
	}
	if f.get(t, "/v1/orders?user_id=u1&status=paid", &op); op.Total != 1 || op.Items[0].ID != O1 {
		t.Errorf("paid orders of u1: %+v", op)
	}
}

// Orders offer the same read-your-writes as products.
func TestOrderReadYourWrites(t *testing.T) {
	f := setup(t)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	order := func(version int64, status string) orders.Doc {
		d := orders.Doc{UserID: "u1", ProductID: "p1", Quantity: 2, TotalPrice: 39.98, Status: status}
		d.ID, d.Version, d.CreatedAt, d.UpdatedAt, d.RecordedAt, d.LastEventID = O1, version, t0, t0, t0, "e"
		return d
	}
	f.index(t, "orders", O1, 2, order(2, "paid"), false)

	var o query.Order
	if w := f.get(t, "/v1/orders/"+O1, &o); w.Code != 200 || o.Status != "paid" || w.Header().Get(query.HeaderVersion) != "2" ||
		w.Header().Get(query.HeaderStale) != "" {
		t.Errorf("get without min_version: %d %v %s", w.Code, w.Header(), w.Body)
	}
	if w := f.get(t, "/v1/orders/"+O1+"?min_version=2&wait=1s", &o); w.Code != 200 || o.Version != 2 || w.Header().Get(query.HeaderStale) != "" {
		t.Errorf("min_version reached: %d stale=%q", w.Code, w.Header().Get(query.HeaderStale))
	}
	start := time.Now()
	w := f.get(t, "/v1/orders/"+O1+"?min_version=5&wait=300ms", &o)
	if w.Code != 200 || w.Header().Get(query.HeaderStale) != "true" || w.Header().Get(query.HeaderVersion) != "2" || o.Version != 2 {
		t.Errorf("min_version not reached: %d headers %v", w.Code, w.Header())
	}
	if el := time.Since(start); el < 300*time.Millisecond || el > 3*time.Second {
		t.Errorf("wait took %s, want about 300ms", el)
	}
	go func() {
		time.Sleep(200 * time.Millisecond)
		f.index(t, "orders", O1, 3, order(3, "shipped"), false)
	}()
	if w := f.get(t, "/v1/orders/"+O1+"?min_version=3&wait=5s", &o); w.Code != 200 || o.Version != 3 || o.Status != "shipped" ||
		w.Header().Get(query.HeaderStale) != "" || w.Header().Get(query.HeaderVersion) != "3" {
		t.Errorf("waiting for a write: %d version %d stale %q", w.Code, o.Version, w.Header().Get(query.HeaderStale))
	}
	// An order the read model has not seen yet: 404 after the wait, marked stale.
	start = time.Now()
	w = f.get(t, "/v1/orders/"+O2+"?min_version=1&wait=200ms", nil)
	if w.Code != 404 || w.Header().Get(query.HeaderStale) != "true" || w.Header().Get(query.HeaderVersion) != "" {
		t.Errorf("unknown order: %d headers %v", w.Code, w.Header())
	}
	if el := time.Since(start); el < 200*time.Millisecond {
		t.Errorf("unknown order answered after %s, before the wait", el)
	}
}

// A principal bound to a user reads that user's orders only: another
// user's order answers exactly like a missing one, wait included.
func TestOrdersOfABoundPrincipal(t *testing.T) {
	f := setup(t)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, o := range []struct{ id, user string }{{O1, "u1"}, {O2, "u1"}, {O9, "u2"}} {
		d := orders.Doc{UserID: o.user, ProductID: "p1", Quantity: 1, TotalPrice: 10, Status: "paid"}
		d.ID, d.Version, d.CreatedAt = o.id, 1, t0
		f.index(t, "orders", o.id, 1, d, o.id == O9)
	}
	f.srv = f.as(&auth.Principal{ID: "oidc:u1", Scopes: auth.Read, Users: []string{"u1"}, Token: true})
	if w := f.get(t, "/v1/orders/"+O1, nil); w.Code != 200 {
		t.Errorf("own order: %d %s", w.Code, w.Body)
	}
	other := f.get(t, "/v1/orders/"+O9, nil)
	missing := f.get(t, "/v1/orders/"+NOPE, nil)
	if other.Code != 404 || other.Body.String() != strings.Replace(missing.Body.String(), NOPE, O9, 1) ||
		other.Header().Get(query.HeaderVersion) != "" {
		t.Errorf("another user's order: %d %v %s; missing: %s", other.Code, other.Header(), other.Body, missing.Body)
	}
	start := time.Now()
	if w := f.get(t, "/v1/orders/"+O9+"?min_version=1&wait=300ms", nil); w.Code != 404 || w.Header().Get(query.HeaderStale) != "true" ||
		time.Since(start) < 300*time.Millisecond {
		t.Errorf("another user's order with a wait: %d %v after %s", w.Code, w.Header(), time.Since(start))
	}
	var op query.Page[query.Order]
	if w := f.get(t, "/v1/orders", &op); w.Code != 200 || op.Total != 2 {
		t.Errorf("own orders: %d %+v", w.Code, op)
	}
	for _, it := range op.Items {
		if it.UserID != "u1" {
			t.Errorf("listed %+v", it)
		}
	}
	if w := f.get(t, "/v1/orders?user_id=u2", nil); w.Code != 403 {
		t.Errorf("another user's list: %d %s", w.Code, w.Body)
	}
	f.srv = f.as(&auth.Principal{ID: "ops", Scopes: auth.Admin})
	if w := f.get(t, "/v1/orders", &op); w.Code != 200 || op.Total != 3 {
		t.Errorf("admin lists every order: %d %+v", w.Code, op)
	}
}
