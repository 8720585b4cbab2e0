//go:build integration

package esindex_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"cqrsflow/internal/esindex"
	"cqrsflow/internal/testenv"
	"cqrsflow/schemas"
)

// Scan walks every document through an alias in pages (a point in time,
// search_after), Sample picks some, MGet names each stored document, and
// DeleteIfUnchanged deletes only what nobody changed since; a same-version
// write goes through with AllowEqual only, an older one never.
func TestScanSampleDeleteAllowEqual(t *testing.T) {
	es := testenv.Elasticsearch(t)
	prefix := testenv.IndexPrefix(t) + "-"
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	mapping, err := schemas.Elasticsearch.ReadFile("elasticsearch/orders.json")
	if err != nil {
		t.Fatal(err)
	}
	alias, index := esindex.AliasName(prefix, "orders"), esindex.IndexName(prefix, "orders", 1)
	if err := esindex.EnsureIndex(ctx, es, index, mapping); err != nil {
		t.Fatal(err)
	}
	if _, err := esindex.EnsureAlias(ctx, es, alias, index); err != nil {
		t.Fatal(err)
	}
	doc := func(id, status string) []byte {
		return fmt.Appendf(nil, `{"id":%q,"status":%q}`, id, status)
	}
	var ops []esindex.Op
	for i := range 25 {
		ops = append(ops, esindex.Op{Index: alias, ID: fmt.Sprintf("o%02d", i), Version: 2, Doc: doc(fmt.Sprintf("o%02d", i), "paid")})
	}
	if res, err := esindex.Bulk(ctx, es, ops, "true"); err != nil || res[0].Err != "" {
		t.Fatalf("bulk: %v %+v", err, res)
	}
	seen := map[string]int64{}
	pages := 0
	err = esindex.Scan(ctx, es, alias, nil, 10, func(refs []esindex.DocRef) error {
		pages++
		for _, r := range refs {
			if r.Index != index {
				t.Errorf("%s: index %q, want %q", r.ID, r.Index, index)
			}
			seen[r.ID] = r.Version
		}
		return nil
	})
	if err != nil || len(seen) != 25 || pages != 3 || seen["o07"] != 2 {
		t.Fatalf("scan: %v, %d documents in %d pages (v%d)", err, len(seen), pages, seen["o07"])
	}
	n := 0
	err = esindex.Scan(ctx, es, alias, map[string]any{"term": map[string]any{"id": "o03"}}, 10, func(refs []esindex.DocRef) error {
		n += len(refs)
		return nil
	})
	if err != nil || n != 1 {
		t.Fatalf("scan with a query: %v, %d documents", err, n)
	}
	if s, err := esindex.Sample(ctx, es, alias, 5); err != nil || len(s) != 5 || s[0].SeqNo < 0 {
		t.Fatalf("sample: %v %+v", err, s)
	}

	hits, err := esindex.MGet(ctx, es, alias, []string{"o01", "o02"})
	if err != nil {
		t.Fatal(err)
	}
	ref := hits["o01"].Ref
	if ref.Index != index || ref.ID != "o01" || ref.Version != 2 || ref.PrimaryTerm < 1 {
		t.Fatalf("mget ref %+v", ref)
	}
	// o01 changes after it was read: the delete refuses.
	res, err := esindex.Bulk(ctx, es, []esindex.Op{{Index: alias, ID: "o01", Version: 2, Doc: doc("o01", "shipped")}}, "")
	if err != nil || !res[0].Conflict {
		t.Fatalf("same version without AllowEqual: %+v %v, want a conflict", res, err)
	}
	res, err = esindex.Bulk(ctx, es, []esindex.Op{{Index: alias, ID: "o01", Version: 2, Doc: doc("o01", "shipped"), AllowEqual: true},
		{Index: alias, ID: "o02", Version: 1, Doc: doc("o02", "created"), AllowEqual: true}}, "")
	if err != nil || res[0].Err != "" || res[0].Conflict || !res[1].Conflict {
		t.Fatalf("AllowEqual: %+v %v, want the same version written and an older one refused", res, err)
	}
	if ok, err := esindex.DeleteIfUnchanged(ctx, es, ref); err != nil || ok {
		t.Fatalf("delete of a changed document: %v %v, want refused", ok, err)
	}
	if ok, err := esindex.DeleteIfUnchanged(ctx, es, hits["o02"].Ref); err != nil || !ok {
		t.Fatalf("delete of an unchanged document: %v %v", ok, err)
	}
	if ok, err := esindex.DeleteIfUnchanged(ctx, es, hits["o02"].Ref); err != nil || ok {
		t.Fatalf("delete of a gone document: %v %v, want false", ok, err)
	}
}
