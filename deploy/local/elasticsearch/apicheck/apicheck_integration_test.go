//go:build integration

package apicheck

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/elastic/go-elasticsearch/v8"

	"cqrsflow/internal/testenv"
)

type call struct {
	t   *testing.T
	es  *elasticsearch.Client
	ctx context.Context
}

// do sends a raw request and decodes the JSON answer; a transport error fails the test.
func (c call) do(method, path, body string) (int, map[string]any, string) {
	c.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(c.ctx, method, path, rd)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	if body != "" {
		ct := "application/json"
		if strings.HasSuffix(path, "_bulk") || strings.Contains(path, "_bulk?") {
			ct = "application/x-ndjson"
		}
		req.Header.Set("Content-Type", ct)
	}
	res, err := c.es.Perform(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		c.t.Fatalf("%s %s: reading body: %v", method, path, err)
	}
	var m map[string]any
	_ = json.Unmarshal(raw, &m) // HEAD and errors may have no JSON body
	return res.StatusCode, m, string(raw)
}

// ok is do + a 200/201 check.
func (c call) ok(method, path, body string) map[string]any {
	c.t.Helper()
	st, m, raw := c.do(method, path, body)
	if st != 200 && st != 201 {
		c.t.Fatalf("%s %s: status %d: %s", method, path, st, raw)
	}
	return m
}

func ids(m map[string]any) string {
	var out []string
	hits, _ := m["hits"].(map[string]any)
	arr, _ := hits["hits"].([]any)
	for _, h := range arr {
		out = append(out, fmt.Sprint(h.(map[string]any)["_id"]))
	}
	return strings.Join(out, ",")
}

func total(m map[string]any) any {
	hits, _ := m["hits"].(map[string]any)
	t, _ := hits["total"].(map[string]any)
	return t["value"]
}

const mapping = `{
  "settings": {"number_of_shards": 1, "number_of_replicas": 0},
  "mappings": {"dynamic": "strict", "properties": {
    "title":  {"type": "text", "analyzer": "standard"},
    "body":   {"type": "text", "analyzer": "standard"},
    "tag":    {"type": "keyword"},
    "count":  {"type": "long"},
    "price":  {"type": "double"},
    "at":     {"type": "date"},
    "active": {"type": "boolean"}
  }}
}`

var docs = []string{
	`{"title":"Red Apple pie","body":"sweet dessert","tag":"food","count":5,"price":3.5,"at":"2026-01-01T10:00:00Z","active":true}`,
	`{"title":"Green apple","body":"sour fruit","tag":"fruit","count":2,"price":1.25,"at":"2026-01-02T10:00:00Z","active":false}`,
	`{"title":"Banana bread","body":"made with apple too","tag":"food","count":9,"price":4.0,"at":"2026-01-03T10:00:00Z","active":true}`,
	`{"title":"Cherry","body":"small red fruit","tag":"fruit","count":7,"price":6.75,"at":"2026-01-04T10:00:00Z","active":true}`,
	`{"title":"Durian","body":"smelly","tag":"fruit","count":1,"price":9.99,"at":"2026-01-05T10:00:00Z","active":false}`,
}

// TestLocalElasticsearchAPIs walks through the APIs the projector and the
// query API use, in order, against one pair of fresh indices.
func TestLocalElasticsearchAPIs(t *testing.T) {
	es := testenv.Elasticsearch(t) // fails (names `make up`) when the node is down
	prefix := testenv.IndexPrefix(t)
	idx1, idx2, alias := prefix+"-v1", prefix+"-v2", prefix+"-read"
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := call{t: t, es: es, ctx: ctx}

	t.Run("root info and ping", func(t *testing.T) {
		c := call{t: t, es: es, ctx: ctx}
		// The client's product check runs on this first answer.
		res, err := es.Info(es.Info.WithContext(ctx))
		if err != nil {
			t.Fatalf("Info: %v", err)
		}
		defer res.Body.Close()
		if res.StatusCode != 200 || res.Header.Get("X-Elastic-Product") != "Elasticsearch" {
			t.Fatalf("GET /: status %d, X-Elastic-Product %q", res.StatusCode, res.Header.Get("X-Elastic-Product"))
		}
		var info struct {
			ClusterName string `json:"cluster_name"`
			Version     struct {
				Number string `json:"number"`
			} `json:"version"`
		}
		if err := json.NewDecoder(res.Body).Decode(&info); err != nil {
			t.Fatalf("decoding GET /: %v", err)
		}
		if !strings.HasPrefix(info.Version.Number, "8.") || info.ClusterName == "" {
			t.Errorf("GET / = %+v, want an 8.x version and a cluster name", info)
		}
		if st, _, _ := c.do(http.MethodHead, "/", ""); st != 200 {
			t.Errorf("HEAD / = %d, want 200", st)
		}
	})

	for _, ix := range []string{idx1, idx2} {
		c.ok(http.MethodPut, "/"+ix, mapping)
	}
	m := c.ok(http.MethodGet, "/"+idx1+"/_mapping", "")
	props := m[idx1].(map[string]any)["mappings"].(map[string]any)["properties"].(map[string]any)
	for field, typ := range map[string]string{"title": "text", "tag": "keyword", "count": "long", "price": "double", "at": "date", "active": "boolean"} {
		if got := props[field].(map[string]any)["type"]; got != typ {
			t.Errorf("mapping of %s = %v, want %s", field, got, typ)
		}
	}

	t.Run("bulk with external versions", func(t *testing.T) {
		c := call{t: t, es: es, ctx: ctx}
		var b strings.Builder
		for i, d := range docs {
			fmt.Fprintf(&b, `{"index":{"_index":%q,"_id":"d%d","version":%d,"version_type":"external"}}`+"\n%s\n", idx1, i+1, 10+i, d)
		}
		m := c.ok(http.MethodPost, "/_bulk?refresh=wait_for", b.String())
		if m["errors"] != false {
			t.Fatalf("bulk reported errors: %v", m)
		}
		// An older external version is rejected per item (409), the rest of the
		// bulk still applies: this is what makes replays idempotent.
		stale := fmt.Sprintf(`{"index":{"_index":%q,"_id":"d1","version":3,"version_type":"external"}}`+"\n%s\n", idx1, docs[1]) +
			fmt.Sprintf(`{"index":{"_index":%q,"_id":"d2","version":20,"version_type":"external"}}`+"\n%s\n", idx1, docs[1])
		m = c.ok(http.MethodPost, "/_bulk?refresh=wait_for", stale)
		items := m["items"].([]any)
		st0 := items[0].(map[string]any)["index"].(map[string]any)["status"]
		st1 := items[1].(map[string]any)["index"].(map[string]any)["status"]
		if m["errors"] != true || st0 != float64(409) || st1 != float64(200) {
			t.Errorf("stale+newer bulk: errors=%v statuses %v,%v, want true 409,200", m["errors"], st0, st1)
		}
		if v := c.ok(http.MethodGet, "/"+idx1+"/_doc/d1", "")["_version"]; v != float64(10) {
			t.Errorf("d1 _version = %v after a stale write, want 10", v)
		}
		// Delete with an external version.
		del := fmt.Sprintf(`{"delete":{"_index":%q,"_id":"gone","version":5,"version_type":"external"}}`+"\n", idx1)
		m = c.ok(http.MethodPost, "/_bulk", del)
		if st := m["items"].([]any)[0].(map[string]any)["delete"].(map[string]any)["status"]; st != float64(404) {
			t.Errorf("external-version delete of a missing doc: status %v, want 404", st)
		}
	})

	c.ok(http.MethodPost, "/"+idx1+"/_refresh", "")

	searches := []struct {
		name, path, body, want string
	}{
		// d1, d2 match in title, d3 only in body (standard analyzer lower-cases
		// "Apple"); sorted by count so the assertion does not depend on BM25.
		{"multi_match over two text fields", "/" + idx1 + "/_search",
			`{"query":{"multi_match":{"query":"APPLE","fields":["title^2","body"]}},"sort":[{"count":"asc"}]}`, "d2,d1,d3"},
		{"sort long desc", "/" + idx1 + "/_search", `{"sort":[{"count":"desc"}]}`, "d3,d4,d1,d2,d5"},
		{"sort double asc", "/" + idx1 + "/_search", `{"sort":[{"price":"asc"}]}`, "d2,d1,d3,d4,d5"},
		{"range on long and date", "/" + idx1 + "/_search",
			`{"query":{"bool":{"filter":[{"range":{"count":{"gte":2,"lt":8}}},{"range":{"at":{"gte":"2026-01-02T00:00:00Z"}}}]}},"sort":[{"at":"asc"}]}`, "d2,d4"},
		{"term on boolean and keyword", "/" + idx1 + "/_search",
			`{"query":{"bool":{"filter":[{"term":{"active":true}},{"term":{"tag":"food"}}]}},"sort":[{"count":"asc"}]}`, "d1,d3"},
		{"from and size", "/" + idx1 + "/_search", `{"from":2,"size":2,"sort":[{"count":"asc"}]}`, "d1,d4"},
		{"search_after", "/" + idx1 + "/_search", `{"size":2,"sort":[{"count":"asc"},{"tag":"asc"}],"search_after":[2,"fruit"]}`, "d1,d4"},
		{"match with operator and, ids, terms", "/" + idx1 + "/_search",
			`{"query":{"bool":{"must":[{"match":{"title":{"query":"apple pie","operator":"and"}}},{"terms":{"tag":["food","x"]}},{"ids":{"values":["d1","d2"]}}]}}}`, "d1"},
	}
	for _, s := range searches {
		t.Run(s.name, func(t *testing.T) {
			m := call{t: t, es: es, ctx: ctx}.ok(http.MethodPost, s.path, s.body)
			if got := ids(m); got != s.want {
				t.Errorf("hits = %s, want %s", got, s.want)
			}
		})
	}

	t.Run("count, mget, aggregations, partial update", func(t *testing.T) {
		c := call{t: t, es: es, ctx: ctx}
		if n := c.ok(http.MethodPost, "/"+idx1+"/_count", `{"query":{"term":{"tag":"fruit"}}}`)["count"]; n != float64(3) {
			t.Errorf("_count = %v, want 3", n)
		}
		m := c.ok(http.MethodPost, "/"+idx1+"/_mget", `{"ids":["d1","d3","missing"]}`)
		var found []string
		for _, d := range m["docs"].([]any) {
			if d.(map[string]any)["found"] == true {
				found = append(found, d.(map[string]any)["_id"].(string))
			}
		}
		if strings.Join(found, ",") != "d1,d3" {
			t.Errorf("_mget found %v, want d1,d3", found)
		}
		m = c.ok(http.MethodPost, "/"+idx1+"/_search", `{"size":0,"aggs":{"tags":{"terms":{"field":"tag"}},"max_price":{"max":{"field":"price"}}}}`)
		aggs := m["aggregations"].(map[string]any)
		b0 := aggs["tags"].(map[string]any)["buckets"].([]any)[0].(map[string]any)
		if b0["key"] != "fruit" || b0["doc_count"] != float64(3) || aggs["max_price"].(map[string]any)["value"] != 9.99 {
			t.Errorf("aggregations = %v", aggs)
		}
		c.ok(http.MethodPost, "/"+idx1+"/_update/d5?refresh=wait_for", `{"doc":{"count":100}}`)
		if got := c.ok(http.MethodGet, "/"+idx1+"/_doc/d5", "")["_source"].(map[string]any)["count"]; got != float64(100) {
			t.Errorf("after _update count = %v, want 100", got)
		}
	})

	t.Run("atomic alias swap", func(t *testing.T) {
		c := call{t: t, es: es, ctx: ctx}
		c.ok(http.MethodPost, "/_aliases", fmt.Sprintf(`{"actions":[{"add":{"index":%q,"alias":%q}}]}`, idx1, alias))
		if n := total(c.ok(http.MethodPost, "/"+alias+"/_search", `{}`)); n != float64(5) {
			t.Fatalf("alias on %s: %v hits, want 5", idx1, n)
		}
		c.ok(http.MethodPost, "/_aliases", fmt.Sprintf(`{"actions":[{"remove":{"index":%q,"alias":%q}},{"add":{"index":%q,"alias":%q}}]}`,
			idx1, alias, idx2, alias))
		m := c.ok(http.MethodGet, "/_alias/"+alias, "")
		if _, on2 := m[idx2]; !on2 || len(m) != 1 {
			t.Errorf("after the swap the alias points at %v, want only %s", m, idx2)
		}
		if n := total(c.ok(http.MethodPost, "/"+alias+"/_search", `{}`)); n != float64(0) {
			t.Errorf("alias on the empty %s: %v hits, want 0", idx2, n)
		}
	})

	t.Run("cluster health and delete index", func(t *testing.T) {
		c := call{t: t, es: es, ctx: ctx}
		res, err := es.Cluster.Health(es.Cluster.Health.WithContext(ctx), es.Cluster.Health.WithWaitForStatus("yellow"),
			es.Cluster.Health.WithTimeout(10*time.Second))
		if err != nil || res.IsError() {
			t.Fatalf("cluster health: %v %v", err, res)
		}
		res.Body.Close()
		c.ok(http.MethodDelete, "/"+idx2, "")
		if st, _, _ := c.do(http.MethodHead, "/"+idx2, ""); st != 404 {
			t.Errorf("HEAD %s after delete = %d, want 404", idx2, st)
		}
	})

	// Bad input answers 4xx with a reason, never 5xx.
	t.Run("errors are 4xx", func(t *testing.T) {
		c := call{t: t, es: es, ctx: ctx}
		st, _, raw := c.do(http.MethodPost, "/"+idx1+"/_doc/x", `{"unknown_field":1}`) // dynamic: strict
		if st != 400 || !strings.Contains(raw, "strict_dynamic_mapping_exception") {
			t.Errorf("strict mapping violation: %d %s", st, raw)
		}
		st, _, raw = c.do(http.MethodPost, "/"+idx1+"/_search", `{"query":{"nope":{}}}`)
		if st != 400 {
			t.Errorf("unknown query type: %d %s", st, raw)
		}
		if st, _, _ = c.do(http.MethodGet, "/"+prefix+"-missing/_doc/1", ""); st != 404 {
			t.Errorf("GET on a missing index = %d, want 404", st)
		}
	})
}
