//go:build integration

package main_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"cqrsflow/internal/envelope"
	"cqrsflow/internal/esindex"
	"cqrsflow/internal/projection/orders"
	"cqrsflow/internal/projection/products"
	"cqrsflow/internal/query"
	"cqrsflow/internal/testenv"
)

var (
	otherOnce sync.Once
	otherDir  string
	otherErr  error
)

// otherBinaries builds api and outbox-relay.
func otherBinaries(t *testing.T) string {
	t.Helper()
	otherOnce.Do(func() {
		otherDir, otherErr = os.MkdirTemp("", "cqrsflow-bins")
		if otherErr != nil {
			return
		}
		out, err := exec.Command("go", "build", "-o", otherDir+"/", "../api", "../outbox-relay").CombinedOutput()
		if err != nil {
			otherErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if otherErr != nil {
		t.Fatal(otherErr)
	}
	return otherDir
}

func startBinary(t *testing.T, name, bin string, env []string, addr string) {
	t.Helper()
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), env...)
	var log bytes.Buffer
	var mu sync.Mutex
	cmd.Stdout = writerFunc(func(p []byte) (int, error) { mu.Lock(); defer mu.Unlock(); return log.Write(p) })
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			mu.Lock()
			t.Logf("%s log:\n%s", name, tail(log.String(), 3000))
			mu.Unlock()
		}
	})
	waitFor(t, 60*time.Second, name+" ready", func() bool {
		res, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			return false
		}
		res.Body.Close()
		return res.StatusCode == 200
	})
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

type apiClient struct {
	base, key string
}

func (c apiClient) do(t *testing.T, method, path string, body any, hdr map[string]string, out any) int {
	t.Helper()
	var rd *bytes.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	} else {
		rd = bytes.NewReader(nil)
	}
	req, _ := http.NewRequest(method, c.base+path, rd)
	req.Header.Set("Authorization", "Bearer "+c.key)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	if out != nil {
		_ = json.NewDecoder(res.Body).Decode(out)
	}
	return res.StatusCode
}

// e2eStack is one test's api, outbox-relay and projector binaries on
// its own schema, topic prefix, consumer groups and index prefix.
type e2eStack struct {
	pg                          *testenv.PG
	name, indexPrefix, bins     string
	relayAddr, projAddr, apiURL string
	api                         apiClient
}

// e2eOptions: partitions of the topics the relay creates, env added to
// every binary, and the projector's own extra env.
type e2eOptions struct {
	partitions int
	env        []string
	projector  []string
}

// startE2E starts the three binaries (relay, projector, api) and removes
// the test's topics and groups when it ends.
func startE2E(t *testing.T, o e2eOptions) e2eStack {
	t.Helper()
	s := e2eStack{pg: testenv.Postgres(t), name: strings.ReplaceAll(testenv.Name(t), "_", "-"), indexPrefix: testenv.IndexPrefix(t) + "-"}
	_ = testenv.Elasticsearch(t)
	adm := testenv.KafkaAdmin(t)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		var ts []string
		for _, a := range []string{"product", "order"} {
			ts = append(ts, envelope.Topic(s.name, a), envelope.DLQTopic(envelope.Topic(s.name, a)))
		}
		_, _ = adm.DeleteTopics(ctx, ts...)
		_, _ = adm.DeleteGroups(ctx, "g-"+s.name+"-products", "g-"+s.name+"-orders")
	})
	if o.partitions == 0 {
		o.partitions = 3
	}
	s.bins = otherBinaries(t)
	brokers := strings.Join(testenv.KafkaBrokers(), ",")
	apiAddr := testenv.FreeAddr(t)
	s.relayAddr, s.projAddr = testenv.FreeAddr(t), testenv.FreeAddr(t)
	startBinary(t, "outbox-relay", filepath.Join(s.bins, "outbox-relay"), append([]string{
		"POSTGRES_URL=" + s.pg.URL, "KAFKA_BROKERS=" + brokers, "TOPIC_PREFIX=" + s.name, fmt.Sprint("TOPIC_PARTITIONS=", o.partitions),
		"METRICS_ADDR=" + s.relayAddr, "RELAY_ID=e2e-" + s.name, "MIGRATE=false"}, o.env...), s.relayAddr)
	startBinary(t, "projector", binary(t), append(append([]string{
		"KAFKA_BROKERS=" + brokers, "ELASTICSEARCH_URL=" + testenv.ElasticsearchURL(), "TOPIC_PREFIX=" + s.name,
		"INDEX_PREFIX=" + s.indexPrefix, "GROUP_PREFIX=g-" + s.name, "METRICS_ADDR=" + s.projAddr, "LAG_INTERVAL=500ms",
		"POSTGRES_URL=" + s.pg.URL}, o.projector...), o.env...), s.projAddr)
	startBinary(t, "api", filepath.Join(s.bins, "api"), append([]string{
		"POSTGRES_URL=" + s.pg.URL, "HTTP_ADDR=" + apiAddr, "API_KEYS=e2e:secret-" + s.name, "ELASTICSEARCH_URL=" + testenv.ElasticsearchURL(),
		"INDEX_PREFIX=" + s.indexPrefix, "MIGRATE_ON_START=false", "LOG_LEVEL=warn"}, o.env...), apiAddr)
	s.apiURL = "http://" + apiAddr
	s.api = apiClient{base: s.apiURL, key: "secret-" + s.name}
	return s
}

type written struct {
	ID      string `json:"id"`
	Version int64  `json:"version"`
}

// Commands through the real api → PostgreSQL → outbox-relay → Kafka →
// projector → Elasticsearch → the api's read routes: documents are
// readable (read-your-writes) and searchable with the right fields and
// version, and every document equals the fold of its aggregate's events in
// the event store.
func TestEndToEndThroughTheAPI(t *testing.T) {
	st := startE2E(t, e2eOptions{})
	pg, name, indexPrefix, api := st.pg, st.name, st.indexPrefix, st.api
	es := testenv.Elasticsearch(t)

	// Products: create, update, delete.
	var lamp, mouse, gone written
	if st := api.do(t, "POST", "/v1/products", map[string]any{"name": "Desk lamp", "description": "Warm light with a brass hinge", "price": 24.5, "stock": 3}, nil, &lamp); st != 201 {
		t.Fatalf("create: %d", st)
	}
	if st := api.do(t, "POST", "/v1/products", map[string]any{"name": "Wireless mouse", "description": "Quiet clicks", "price": 19.9, "stock": 0}, nil, &mouse); st != 201 {
		t.Fatalf("create: %d", st)
	}
	if st := api.do(t, "POST", "/v1/products", map[string]any{"name": "Old radio", "description": "Crackling", "price": 5, "stock": 1}, nil, &gone); st != 201 {
		t.Fatalf("create: %d", st)
	}
	var upd written
	if st := api.do(t, "PUT", "/v1/products/"+lamp.ID, map[string]any{"name": "Desk lamp XL", "description": "Warm light with a brass hinge and a dimmer", "price": 29.99, "stock": 7},
		map[string]string{"If-Match": fmt.Sprint(lamp.Version)}, &upd); st != 200 || upd.Version != 2 {
		t.Fatalf("update: %d %+v", st, upd)
	}
	var del written
	if st := api.do(t, "DELETE", "/v1/products/"+gone.ID, nil, nil, &del); st != 200 {
		t.Fatalf("delete: %d", st)
	}

	// Read-your-writes.
	var p query.Product
	if st := api.do(t, "GET", fmt.Sprintf("/v1/products/%s?min_version=%d&wait=10s", lamp.ID, upd.Version), nil, nil, &p); st != 200 ||
		p.Version != 2 || p.Name != "Desk lamp XL" || p.Price != 29.99 || p.Stock != 7 || p.Description != "Warm light with a brass hinge and a dimmer" {
		t.Fatalf("read-your-writes: %d %+v", st, p)
	}
	waitFor(t, 15*time.Second, "deleted product hidden", func() bool {
		return api.do(t, "GET", fmt.Sprintf("/v1/products/%s?min_version=%d&wait=1s", gone.ID, del.Version), nil, nil, nil) == 404
	})
	// Search by a word of the description (after the refresh interval).
	waitFor(t, 15*time.Second, "search finds the lamp by 'dimmer'", func() bool {
		var page query.Page[query.Product]
		if api.do(t, "GET", "/v1/products/search?q=dimmer", nil, nil, &page) != 200 {
			return false
		}
		return page.Total == 1 && page.Items[0].ID == lamp.ID && page.Items[0].Version == 2
	})
	var page query.Page[query.Product]
	if api.do(t, "GET", "/v1/products/search?q=crackling", nil, nil, &page); page.Total != 0 {
		t.Errorf("deleted product found by search: %+v", page)
	}

	// Orders: create, pay, ship.
	var o written
	if st := api.do(t, "POST", "/v1/orders", map[string]any{"user_id": "u-" + name, "product_id": lamp.ID, "quantity": 2, "total_price": 59.98}, nil, &o); st != 201 {
		t.Fatalf("order: %d", st)
	}
	for _, a := range []string{"pay", "ship"} {
		if st := api.do(t, "POST", "/v1/orders/"+o.ID+"/"+a, nil, nil, &o); st != 200 {
			t.Fatalf("%s: %d", a, st)
		}
	}
	waitFor(t, 15*time.Second, "shipped order readable and listed", func() bool {
		var got query.Order
		if api.do(t, "GET", "/v1/orders/"+o.ID, nil, nil, &got) != 200 || got.Status != "shipped" || got.Version != 3 {
			return false
		}
		var op query.Page[query.Order]
		return api.do(t, "GET", "/v1/orders?user_id=u-"+name+"&status=shipped", nil, nil, &op) == 200 && op.Total == 1
	})

	// A burst of updates, then: every document equals the event store's fold.
	for i := 0; i < 20; i++ {
		var w written
		api.do(t, "PUT", "/v1/products/"+mouse.ID, map[string]any{"name": fmt.Sprintf("Wireless mouse %d", i), "description": "Quiet clicks", "price": 19.9, "stock": i}, nil, &w)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	rows, err := pg.Pool.Query(ctx, `SELECT event_id::text, event_type, schema_version, aggregate_type, aggregate_id, version, occurred_at, recorded_at, payload
		FROM events ORDER BY aggregate_type, aggregate_id, version`)
	if err != nil {
		t.Fatal(err)
	}
	prodDocs, orderDocs := map[string]*products.Doc{}, map[string]*orders.Doc{}
	for rows.Next() {
		var e envelope.Envelope
		var payload []byte
		if err := rows.Scan(&e.EventID, &e.EventType, &e.SchemaVersion, &e.AggregateType, &e.AggregateID, &e.Version, &e.OccurredAt, &e.RecordedAt, &payload); err != nil {
			t.Fatal(err)
		}
		e.Payload = payload
		switch e.AggregateType {
		case "product":
			d, err := projectProduct(prodDocs[e.AggregateID], &e)
			if err != nil {
				t.Fatal(err)
			}
			prodDocs[e.AggregateID] = d
		case "order":
			d, err := orders.Apply(orderDocs[e.AggregateID], &e)
			if err != nil {
				t.Fatal(err)
			}
			orderDocs[e.AggregateID] = d
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if len(prodDocs) != 3 || len(orderDocs) != 1 {
		t.Fatalf("event store holds %d products and %d orders, want 3 and 1", len(prodDocs), len(orderDocs))
	}
	check := func(alias string, want map[string]any) func() (bool, string) {
		return func() (bool, string) {
			var ids []string
			for id := range want {
				ids = append(ids, id)
			}
			hits, err := esindex.MGet(ctx, es, esindex.AliasName(indexPrefix, alias), ids)
			if err != nil {
				return false, err.Error()
			}
			for id, w := range want {
				h, ok := hits[id]
				if !ok {
					return false, id + " missing"
				}
				wb, _ := json.Marshal(w)
				var a, b any
				_ = json.Unmarshal(wb, &a)
				_ = json.Unmarshal(h.Source, &b)
				if fmt.Sprint(a) != fmt.Sprint(b) {
					return false, fmt.Sprintf("%s: index %s\nevent store fold %s", id, h.Source, wb)
				}
			}
			return true, ""
		}
	}
	wantP, wantO := map[string]any{}, map[string]any{}
	for id, d := range prodDocs {
		wantP[id] = d
	}
	for id, d := range orderDocs {
		wantO[id] = d
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		ok1, w1 := check("products", wantP)()
		ok2, w2 := check("orders", wantO)()
		if ok1 && ok2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("index does not equal the event store fold: %s %s", w1, w2)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
