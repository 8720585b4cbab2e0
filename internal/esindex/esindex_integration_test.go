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
