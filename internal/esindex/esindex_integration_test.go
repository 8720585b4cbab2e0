//go:build integration

package esindex_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"cqrsflow/internal/esindex"
	"cqrsflow/internal/testenv"
	"cqrsflow/schemas"
)

func TestIndexAliasBulkMGet(t *testing.T) {
	es := testenv.Elasticsearch(t)
	prefix := testenv.IndexPrefix(t) + "-"
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	mapping, err := schemas.Elasticsearch.ReadFile("elasticsearch/products.json")
	if err != nil {
		t.Fatal(err)
	}
	alias := esindex.AliasName(prefix, "products")
	v1, v2 := esindex.IndexName(prefix, "products", 1), esindex.IndexName(prefix, "products", 2)
	if _, err := esindex.AliasTargets(ctx, es, alias); !errors.Is(err, esindex.ErrNotFound) {
		t.Fatalf("missing alias: err %v, want ErrNotFound", err)
	}
	for range 2 { // idempotent
		if err := esindex.EnsureIndex(ctx, es, v1, mapping); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := esindex.EnsureAlias(ctx, es, alias, v1); err != nil || !slices.Equal(got, []string{v1}) {
		t.Fatalf("EnsureAlias = %v, %v", got, err)
	}

	doc := func(v string) []byte {
		return []byte(`{"id":"p1","name":"n","description":"d","price":1,"stock":1,"version":` + v +
			`,"deleted":false,"created_at":"2026-01-01T00:00:00Z","updated_at":"2026-01-01T00:00:00Z","last_event_id":"e` + v + `","recorded_at":"2026-01-01T00:00:00Z"}`)
	}
	res, err := esindex.Bulk(ctx, es, []esindex.Op{{Index: alias, ID: "p1", Version: 3, Doc: doc("3")}}, "")
	if err != nil || res[0].Err != "" || res[0].Conflict {
		t.Fatalf("bulk v3: %+v %v", res, err)
	}
	// An older or equal external version is a conflict, not an error.
	res, err = esindex.Bulk(ctx, es, []esindex.Op{
		{Index: alias, ID: "p1", Version: 2, Doc: doc("2")},
		{Index: alias, ID: "p1", Version: 3, Doc: doc("3")},
		{Index: alias, ID: "p2", Version: 1, Doc: []byte(`{"colour":"red"}`)}, // strict mapping: item error
	}, "")
	if err != nil {
		t.Fatal(err)
	}
	if !res[0].Conflict || !res[1].Conflict || res[2].Conflict || res[2].Err == "" || res[2].Status != 400 {
		t.Errorf("bulk results %+v, want conflict, conflict, 400 item error", res)
	}
	if res[0].Rejected() || !res[2].Rejected() {
		t.Errorf("Rejected() = %v, %v for a conflict and a mapping rejection; want false, true", res[0].Rejected(), res[2].Rejected())
	}
	// An id over Elasticsearch's limit fails the whole request (400
	// action_request_validation_exception, not an item error): rejected,
	// not unavailable, so nobody retries it.
	_, err = esindex.Bulk(ctx, es, []esindex.Op{
		{Index: alias, ID: "fine", Version: 1, Doc: doc("1")},
		{Index: alias, ID: strings.Repeat("i", esindex.MaxIDBytes+1), Version: 1, Doc: doc("1")},
	}, "")
	if !errors.Is(err, esindex.ErrRejected) || errors.Is(err, esindex.ErrUnavailable) {
		t.Errorf("bulk with a %d-byte id: err %v, want ErrRejected only", esindex.MaxIDBytes+1, err)
	}
	hits, err := esindex.MGet(ctx, es, alias, []string{"p1", "nope"})
	if err != nil || len(hits) != 1 || hits["p1"].Version != 3 {
		t.Fatalf("mget: %+v %v", hits, err)
	}

	// Swap: one request moves the alias.
	if err := esindex.EnsureIndex(ctx, es, v2, mapping); err != nil {
		t.Fatal(err)
	}
	old, err := esindex.SwapAlias(ctx, es, alias, v2)
	if err != nil || !slices.Equal(old, []string{v1}) {
		t.Fatalf("swap: old %v, %v", old, err)
	}
	if got, _ := esindex.AliasTargets(ctx, es, alias); !slices.Equal(got, []string{v2}) {
		t.Errorf("alias after swap → %v, want [%s]", got, v2)
	}
	if hits, _ := esindex.MGet(ctx, es, alias, []string{"p1"}); len(hits) != 0 {
		t.Errorf("alias still reads the old index")
	}
	if err := esindex.DeleteIndex(ctx, es, v1); err != nil {
		t.Fatal(err)
	}
	if _, err := esindex.Count(ctx, es, v1); !errors.Is(err, esindex.ErrNotFound) {
		t.Errorf("count of a deleted index: %v, want ErrNotFound", err)
	}
}

// Op lists above MaxBulkBytes are split into several requests (one huge
// request would be rejected with 429 by indexing pressure, forever).
func TestBulkSplitsLargeRequests(t *testing.T) {
	es := testenv.Elasticsearch(t)
	index := testenv.IndexPrefix(t) + "-big"
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	mapping, _ := schemas.Elasticsearch.ReadFile("elasticsearch/products.json")
	if err := esindex.EnsureIndex(ctx, es, index, mapping); err != nil {
		t.Fatal(err)
	}
	big := strings.Repeat("word ", 100_000) // 500 kB
	var ops []esindex.Op
	for i := range 40 { // ~20 MB in all
		ops = append(ops, esindex.Op{Index: index, ID: fmt.Sprint(i), Version: 1,
			Doc: []byte(`{"id":"` + fmt.Sprint(i) + `","description":"` + big + `"}`)})
	}
	res, err := esindex.Bulk(ctx, es, ops, "true")
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != len(ops) {
		t.Fatalf("%d results for %d ops", len(res), len(ops))
	}
	for i, r := range res {
		if r.Err != "" || r.Conflict {
			t.Fatalf("op %d: %+v", i, r)
		}
	}
	if n, err := esindex.Count(ctx, es, index); err != nil || n != 40 {
		t.Errorf("count %d (%v), want 40", n, err)
	}
}

// Several requests in flight at once still give one result per op, in op
// order (a conflict and an item error land on their own ops); an op list
// that repeats an id is sent one request after the other, so its versions
// apply in order.
func TestBulkConcurrentChunksKeepOrder(t *testing.T) {
	es := testenv.Elasticsearch(t)
	index := testenv.IndexPrefix(t) + "-conc"
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	mapping, _ := schemas.Elasticsearch.ReadFile("elasticsearch/products.json")
	if err := esindex.EnsureIndex(ctx, es, index, mapping); err != nil {
		t.Fatal(err)
	}
	doc := func(id string) []byte {
		return []byte(`{"id":"` + id + `","description":"` + strings.Repeat("x", 1000) + `"}`)
	}
	// d-4000 already holds v5: writing v1 is a conflict.
	if res, err := esindex.Bulk(ctx, es, []esindex.Op{{Index: index, ID: "d-4000", Version: 5, Doc: doc("d-4000")}}, ""); err != nil || res[0].Err != "" {
		t.Fatalf("seeding: %+v %v", res, err)
	}
	const n = 6000 // ~7 MB: several requests
	var ops []esindex.Op
	for i := range n {
		id := fmt.Sprintf("d-%d", i)
		d := doc(id)
		if i == n-2 {
			d = []byte(`{"colour":"red"}`) // strict mapping: item error
		}
		ops = append(ops, esindex.Op{Index: index, ID: id, Version: 1, Doc: d})
	}
	res, err := esindex.Bulk(ctx, es, ops, "true")
	if err != nil || len(res) != n {
		t.Fatalf("bulk: %d results, %v", len(res), err)
	}
	for i, r := range res {
		switch i {
		case 4000:
			if !r.Conflict {
				t.Errorf("op %d: %+v, want the conflict", i, r)
			}
		case n - 2:
			if r.Err == "" || r.Status != 400 {
				t.Errorf("op %d: %+v, want the 400 item error", i, r)
			}
		default:
			if r.Err != "" || r.Conflict || r.Status != 201 {
				t.Fatalf("op %d: %+v, want created", i, r)
			}
		}
	}
	// Repeated ids, versions rising: each must apply after the previous.
	var rep []esindex.Op
	for v := int64(1); v <= 3; v++ {
		for i := range 1500 {
			id := fmt.Sprintf("r-%d", i)
			rep = append(rep, esindex.Op{Index: index, ID: id, Version: v, Doc: doc(id)})
		}
	}
	res, err = esindex.Bulk(ctx, es, rep, "true")
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range res {
		if r.Err != "" || r.Conflict {
			t.Fatalf("repeated-id op %d (%s v%d): %+v; the versions were applied out of order", i, rep[i].ID, rep[i].Version, r)
		}
	}
	hits, err := esindex.MGet(ctx, es, index, []string{"r-0", "r-1499"})
	if err != nil || hits["r-0"].Version != 3 || hits["r-1499"].Version != 3 {
		t.Fatalf("mget: %+v %v", hits, err)
	}
}
