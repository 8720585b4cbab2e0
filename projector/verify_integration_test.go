//go:build integration

package main_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/elastic/go-elasticsearch/v8"
	"github.com/google/uuid"

	"cqrsflow/internal/envelope"
	"cqrsflow/internal/esindex"
	"cqrsflow/internal/outbox"
	"cqrsflow/internal/projector"
	"cqrsflow/internal/testenv"
)

// pipeline is a private api → PostgreSQL → relay → Kafka → projector
// stack for the verification tests: the api and relay binaries run for
// the whole test, projectors are started (and killed) by the test.
type pipeline struct {
	pg          *testenv.PG
	es          *elasticsearch.Client
	name        string
	indexPrefix string
	api         apiClient
}

func newPipeline(t *testing.T) *pipeline {
	t.Helper()
	p := &pipeline{pg: testenv.Postgres(t), es: testenv.Elasticsearch(t), name: strings.ReplaceAll(testenv.Name(t), "_", "-"),
		indexPrefix: testenv.IndexPrefix(t) + "-"}
	adm := testenv.KafkaAdmin(t)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		var ts []string
		for _, a := range []string{"product", "order"} {
			topic := envelope.Topic(p.name, a)
			ts = append(ts, topic, envelope.DLQTopic(topic), projector.QuarantineTopic(topic))
		}
		_, _ = adm.DeleteTopics(ctx, ts...)
		_, _ = adm.DeleteGroups(ctx, "g-"+p.name+"-products", "g-"+p.name+"-orders")
	})
	bins := otherBinaries(t)
	relayAddr, apiAddr := testenv.FreeAddr(t), testenv.FreeAddr(t)
	startBinary(t, "outbox-relay", filepath.Join(bins, "outbox-relay"), []string{
		"POSTGRES_URL=" + p.pg.URL, "KAFKA_BROKERS=" + strings.Join(testenv.KafkaBrokers(), ","), "TOPIC_PREFIX=" + p.name,
		"TOPIC_PARTITIONS=4", "METRICS_ADDR=" + relayAddr, "RELAY_ID=verify-" + p.name, "MIGRATE=false", "LOG_LEVEL=warn"}, relayAddr)
	startBinary(t, "api", filepath.Join(bins, "api"), []string{
		"POSTGRES_URL=" + p.pg.URL, "HTTP_ADDR=" + apiAddr, "API_KEYS=v:secret-" + p.name, "ELASTICSEARCH_URL=" + testenv.ElasticsearchURL(),
		"INDEX_PREFIX=" + p.indexPrefix, "MIGRATE_ON_START=false", "LOG_LEVEL=warn", "RATE_LIMIT_RPS=0"}, apiAddr)
	p.api = apiClient{base: "http://" + apiAddr, key: "secret-" + p.name}
	return p
}

func (p *pipeline) env(extra ...string) []string {
	return append(append(os.Environ(),
		"POSTGRES_URL="+p.pg.URL, "KAFKA_BROKERS="+strings.Join(testenv.KafkaBrokers(), ","),
		"ELASTICSEARCH_URL="+testenv.ElasticsearchURL(), "TOPIC_PREFIX="+p.name, "INDEX_PREFIX="+p.indexPrefix,
		"GROUP_PREFIX=g-"+p.name, "LAG_INTERVAL=500ms", "LOG_LEVEL="+logLevel(),
	), extra...)
}

func (p *pipeline) projector(t *testing.T, name string, extra ...string) *proc {
	t.Helper()
	addr := testenv.FreeAddr(t)
	return startProc(t, name, addr, p.env(append([]string{"METRICS_ADDR=" + addr}, extra...)...))
}

// verify runs `projector verify` with args (and --json) and returns its
// exit status, report and stderr.
func (p *pipeline) verify(t *testing.T, args ...string) (int, projector.VerifyReport, string) {
	t.Helper()
	cmd := exec.Command(binary(t), append([]string{"verify", "--json"}, args...)...)
	cmd.Env = p.env()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := cmd.ProcessState.ExitCode()
	if err != nil && code < 0 {
		t.Fatalf("projector verify %v: %v", args, err)
	}
	var rep projector.VerifyReport
	if code == 0 || code == 1 {
		if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
			t.Fatalf("projector verify %v (exit %d): %v\n%s\n%s", args, code, err, stdout.String(), stderr.String())
		}
	}
	return code, rep, stderr.String()
}

// waitClean waits until verify --all reports every aggregate of the
// projection equal (the projectors caught up) and returns that report.
func (p *pipeline) waitClean(t *testing.T, projection string, d time.Duration) projector.VerifyReport {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		code, rep, stderr := p.verify(t, "--projection", projection, "--all", "--margin", "1s")
		if code == 0 && rep.Counts[projector.ResultEqual] == rep.Checked {
			return rep
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not verify clean within %s: exit %d, counts %v, differences %+v\n%s", projection, d, code, rep.Counts, rep.Differences, stderr)
		}
		time.Sleep(time.Second)
	}
}

// workload sends n random commands: products created, updated and
// deleted, orders created, paid, shipped and cancelled (some refused by
// the domain, which is fine: they append nothing).
func (p *pipeline) workload(t *testing.T, rng *rand.Rand, n int, during func(i int)) (productIDs, orderIDs []string) {
	t.Helper()
	for i := range n {
		if during != nil {
			during(i)
		}
		var w written
		switch k := rng.IntN(10); {
		case k < 3 || len(productIDs) == 0:
			if p.api.do(t, "POST", "/v1/products", map[string]any{"name": fmt.Sprintf("product %d", i), "description": "a thing",
				"price": float64(rng.IntN(10000)) / 100, "stock": rng.IntN(50)}, nil, &w) == 201 {
				productIDs = append(productIDs, w.ID)
			}
		case k < 6:
			id := productIDs[rng.IntN(len(productIDs))]
			p.api.do(t, "PUT", "/v1/products/"+id, map[string]any{"name": fmt.Sprintf("product %d v", i), "description": "changed",
				"price": float64(rng.IntN(10000)) / 100, "stock": rng.IntN(50)}, nil, nil)
		case k < 7:
			p.api.do(t, "DELETE", "/v1/products/"+productIDs[rng.IntN(len(productIDs))], nil, nil, nil)
		case k < 8 || len(orderIDs) == 0:
			if p.api.do(t, "POST", "/v1/orders", map[string]any{"user_id": "u1", "product_id": productIDs[rng.IntN(len(productIDs))],
				"quantity": 1 + rng.IntN(3), "total_price": 9.99}, nil, &w) == 201 {
				orderIDs = append(orderIDs, w.ID)
			}
		default:
			action := []string{"pay", "ship", "cancel"}[rng.IntN(3)]
			p.api.do(t, "POST", "/v1/orders/"+orderIDs[rng.IntN(len(orderIDs))]+"/"+action, nil, nil, nil)
		}
	}
	return productIDs, orderIDs
}

// Random commands while two projectors consume, one SIGKILLed
// mid-stream and started again: afterwards verify --all reports every
// aggregate of both projections equal (exit 0, no drift, nothing in
// flight), and the workers' own verification found no drift either.
func TestVerifyAfterAProjectorWasKilled(t *testing.T) {
	p := newPipeline(t)
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 7))
	a := p.projector(t, "projector-a", "VERIFY_RATE=20", "VERIFY_MARGIN=2s")
	b := p.projector(t, "projector-b", "VERIFY_RATE=20", "VERIFY_MARGIN=2s")
	var b2 *proc
	prods, ords := p.workload(t, rng, 300, func(i int) {
		switch i {
		case 120:
			if err := b.cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			<-b.done
			b.done <- nil
		case 200:
			b2 = p.projector(t, "projector-b2", "VERIFY_RATE=20", "VERIFY_MARGIN=2s")
		}
	})
	var aggregates int
	if err := p.pg.Pool.QueryRow(context.Background(), `SELECT count(*) FROM aggregates`).Scan(&aggregates); err != nil {
		t.Fatal(err)
	}
	rp := p.waitClean(t, "products", 90*time.Second)
	ro := p.waitClean(t, "orders", 30*time.Second)
	if rp.Checked+ro.Checked != aggregates || rp.Checked != len(prods) || ro.Checked != len(ords) || rp.Drift+ro.Drift != 0 {
		t.Fatalf("checked %d products and %d orders of %d aggregates (%d, %d created), drift %d",
			rp.Checked, ro.Checked, aggregates, len(prods), len(ords), rp.Drift+ro.Drift)
	}
	t.Logf("verified %d products and %d orders: all equal; %d events read", rp.Checked, ro.Checked, rp.Stats.Events+ro.Stats.Events)
	waitFor(t, 30*time.Second, "the workers verified aggregates and found no drift", func() bool {
		var equal, drift float64
		for _, w := range []*proc{a, b2} {
			e, _ := w.metric(t, "cqrsflow_projection_verified_total", `result="equal"`)
			d, _ := w.metric(t, "cqrsflow_projection_drift_aggregates", "")
			equal, drift = equal+e, drift+d
		}
		return equal > 0 && drift == 0
	})
	for _, w := range []*proc{a, b2} {
		for _, res := range []string{"missing", "stale", "different"} {
			if n, _ := w.metric(t, "cqrsflow_projection_verified_total", `result="`+res+`"`); n != 0 {
				t.Errorf("a worker counted %v %s aggregates", n, res)
			}
		}
	}
}

// corrupt writes raw into the projection's index (behind the alias).
func (p *pipeline) corrupt(t *testing.T, method, path, body string) {
	t.Helper()
	req, _ := http.NewRequest(method, testenv.ElasticsearchURL()+"/"+p.indexPrefix+"products_v1"+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode >= 300 {
		b, _ := io.ReadAll(res.Body)
		t.Fatalf("%s %s: %s %s", method, path, res.Status, b)
	}
}

func (p *pipeline) doc(t *testing.T, id string) (esindex.Hit, map[string]any) {
	t.Helper()
	hits, err := esindex.MGet(context.Background(), p.es, esindex.AliasName(p.indexPrefix, "products"), []string{id})
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	_ = json.Unmarshal(hits[id].Source, &m)
	return hits[id], m
}

// Documents corrupted directly in Elasticsearch — a changed field, an
// older version, a deleted document, an extra document — are each found
// with the right result and exit status 1; --repair fixes them through the
// versioned write path (the extra one with --delete-unexpected), and a
// second verify reports no drift.
func TestVerifyFindsAndRepairsCorruption(t *testing.T) {
	p := newPipeline(t)
	p.projector(t, "projector", "VERIFY_RATE=0")
	var ids []string
	for i := range 6 {
		var w written
		if st := p.api.do(t, "POST", "/v1/products", map[string]any{"name": fmt.Sprintf("item %d", i), "description": "d",
			"price": 10 + i, "stock": i}, nil, &w); st != 201 {
			t.Fatalf("create: %d", st)
		}
		ids = append(ids, w.ID)
		for j := range 2 {
			p.api.do(t, "PUT", "/v1/products/"+w.ID, map[string]any{"name": fmt.Sprintf("item %d.%d", i, j), "description": "d",
				"price": 20 + i, "stock": j}, nil, nil)
		}
	}
	p.waitClean(t, "products", 60*time.Second)
	// A DELETE by hand leaves a tombstone one version above the document
	// for index.gc_deletes (60s), which refuses the document's own version
	// until then: the runbook says to repair again after it; the test
	// does not wait a minute.
	p.corrupt(t, "PUT", "/_settings", `{"index.gc_deletes": "1s"}`)

	changed, older, gone := ids[0], ids[1], ids[2]
	extra := uuid.NewString()
	h, src := p.doc(t, changed)
	src["price"] = 999.99
	b, _ := json.Marshal(src)
	p.corrupt(t, "PUT", fmt.Sprintf("/_doc/%s?version=%d&version_type=external_gte", changed, h.Version), string(b))
	h, src = p.doc(t, older)
	p.corrupt(t, "DELETE", "/_doc/"+older, "")
	time.Sleep(1500 * time.Millisecond)
	p.corrupt(t, "POST", "/_refresh", "")
	src["version"], src["price"] = h.Version-1, 1.5
	b, _ = json.Marshal(src)
	p.corrupt(t, "PUT", fmt.Sprintf("/_doc/%s?version=%d&version_type=external", older, h.Version-1), string(b))
	p.corrupt(t, "DELETE", "/_doc/"+gone, "")
	src["id"], src["version"] = extra, 1
	b, _ = json.Marshal(src)
	p.corrupt(t, "PUT", fmt.Sprintf("/_doc/%s?version=1&version_type=external&refresh=true", extra), string(b))

	code, rep, stderr := p.verify(t, "--projection", "products", "--all", "--margin", "1s")
	if code != 1 || rep.Drift != 4 || !strings.Contains(stderr, "4 aggregates of products differ") {
		t.Fatalf("verify: exit %d, drift %d, counts %v\n%s", code, rep.Drift, rep.Counts, stderr)
	}
	got := map[string]projector.Check{}
	for _, c := range rep.Differences {
		got[c.AggregateID] = c
	}
	want := map[string]string{changed: projector.ResultDifferent, older: projector.ResultStale, gone: projector.ResultMissing,
		extra: projector.ResultUnexpected}
	for id, res := range want {
		if got[id].Result != res {
			t.Errorf("%s: %+v, want %s", id, got[id], res)
		}
	}
	if d := got[changed].Diffs; len(d) != 1 || d[0].Field != "price" || string(d[0].Actual) != "999.99" {
		t.Errorf("changed: diffs %+v, want price only", d)
	}
	if c := got[older]; c.DocumentVersion != c.ExpectedVersion-1 {
		t.Errorf("older: %+v", c)
	}
	// One aggregate, and an id nobody knows.
	code, one, _ := p.verify(t, "--projection", "products", "--margin", "1s", "--aggregate", changed, "--aggregate", ids[3], "--aggregate", "nobody")
	if code != 1 || one.Checked != 2 || one.Counts[projector.ResultDifferent] != 1 || len(one.NotFound) != 1 {
		t.Errorf("verify --aggregate: exit %d, %+v", code, one)
	}
	// The text report shows the field.
	cmd := exec.Command(binary(t), "verify", "--projection", "products", "--margin", "1s", "--aggregate", changed)
	cmd.Env = p.env()
	out, _ := cmd.Output()
	if !strings.Contains(string(out), "price: expected ") || !strings.Contains(string(out), "found 999.99") {
		t.Errorf("text report:\n%s", out)
	}

	time.Sleep(1500 * time.Millisecond) // the tombstone of gone's DELETE expires (gc_deletes 1s)
	p.corrupt(t, "POST", "/_refresh", "")
	code, fixed, stderr := p.verify(t, "--projection", "products", "--all", "--margin", "1s", "--repair", "--delete-unexpected")
	if code != 0 || fixed.Repair == nil || fixed.Repair.Written != 3 || fixed.Repair.Deleted != 1 {
		t.Fatalf("repair: exit %d, %+v\n%s", code, fixed.Repair, stderr)
	}
	rep = p.waitClean(t, "products", 10*time.Second)
	if rep.Checked != len(ids) {
		t.Errorf("after the repair: %d checked, want %d", rep.Checked, len(ids))
	}
	if h, _ := p.doc(t, older); h.Version != got[older].ExpectedVersion {
		t.Errorf("older after the repair: v%d", h.Version)
	}
	// The projection goes on over the repaired documents.
	var w written
	if st := p.api.do(t, "PUT", "/v1/products/"+gone, map[string]any{"name": "back", "description": "d", "price": 1, "stock": 1}, nil, &w); st != 200 {
		t.Fatalf("update: %d", st)
	}
	waitFor(t, 15*time.Second, "the update after the repair applied", func() bool {
		h, _ := p.doc(t, gone)
		return h.Version == w.Version
	})
	p.waitClean(t, "products", 10*time.Second)
}

// The continuous verification of a worker finds a document corrupted
// behind its back within its walk (VERIFY_RATE 20/s over 8 aggregates),
// counts it (result different) and shows it on the drift gauge; after a
// repair the gauge returns to 0.
func TestContinuousVerificationFindsCorruption(t *testing.T) {
	p := newPipeline(t)
	w := p.projector(t, "projector", "VERIFY_RATE=20", "VERIFY_MARGIN=1s", "VERIFY_WINDOW=5m", "PROJECTIONS=products")
	var ids []string
	for i := range 8 {
		var wr written
		if st := p.api.do(t, "POST", "/v1/products", map[string]any{"name": fmt.Sprintf("item %d", i), "description": "d",
			"price": 10, "stock": 1}, nil, &wr); st != 201 {
			t.Fatalf("create: %d", st)
		}
		ids = append(ids, wr.ID)
	}
	waitFor(t, 30*time.Second, "every aggregate verified equal by the worker", func() bool {
		n, _ := w.metric(t, "cqrsflow_projection_verified_total", `projection="products",result="equal"`)
		return n >= float64(len(ids))
	})
	if d, ok := w.metric(t, "cqrsflow_projection_drift_aggregates", `projection="products"`); !ok || d != 0 {
		t.Fatalf("drift gauge %v (present %v) before any corruption", d, ok)
	}
	h, src := p.doc(t, ids[4])
	src["name"] = "tampered"
	b, _ := json.Marshal(src)
	p.corrupt(t, "PUT", fmt.Sprintf("/_doc/%s?version=%d&version_type=external_gte", ids[4], h.Version), string(b))
	start := time.Now()
	waitFor(t, 10*time.Second, "the drift gauge shows the corrupted document", func() bool {
		d, _ := w.metric(t, "cqrsflow_projection_drift_aggregates", `projection="products"`)
		n, _ := w.metric(t, "cqrsflow_projection_verified_total", `projection="products",result="different"`)
		return d == 1 && n >= 1
	})
	t.Logf("found %s after %s (8 aggregates at 20/s: one walk takes under a second)", ids[4], time.Since(start).Round(time.Millisecond))
	if code, rep, _ := p.verify(t, "--projection", "products", "--margin", "1s", "--aggregate", ids[4], "--repair"); code != 0 || rep.Repair.Written != 1 {
		t.Fatalf("repair: exit %d %+v", code, rep.Repair)
	}
	waitFor(t, 10*time.Second, "the drift gauge back to 0 after the repair", func() bool {
		d, _ := w.metric(t, "cqrsflow_projection_drift_aggregates", `projection="products"`)
		return d == 0
	})
}

// Verification streams: --all over VERIFY_MEM_AGGREGATES aggregates
// (default 5000; 100000 and VERIFY_MEM_TIME=1, which runs it under
// /usr/bin/time -v, for the figure in BENCHMARKS.md) holds at most
// --page-rows event rows at once, and the verify process's peak RSS stays
// under VERIFY_MEM_MAX_MB (default 200). The store is filled by SQL and
// projected by the real relay and projector.
func TestVerifyMemoryBound(t *testing.T) {
	n := envInt(t, "VERIFY_MEM_AGGREGATES", 5000)
	maxMB := envInt(t, "VERIFY_MEM_MAX_MB", 200)
	const pageRows = 1000
	p := newPipeline(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	fill := time.Now()
	for _, sql := range []string{
		`INSERT INTO aggregates (aggregate_type, aggregate_id, version) SELECT 'product', 'p-' || lpad(g::text, 7, '0'), 2 FROM generate_series(1, $1) g`,
		`INSERT INTO events (event_id, aggregate_type, aggregate_id, version, event_type, schema_version, payload, metadata, occurred_at)
		 SELECT gen_random_uuid(), 'product', 'p-' || lpad(g::text, 7, '0'), v, CASE v WHEN 1 THEN 'ProductCreated' ELSE 'ProductUpdated' END, 1,
		   jsonb_build_object('name', 'product ' || g || ' v' || v, 'description', repeat('word ', 40), 'price', (g % 10000) / 100.0, 'stock', g % 50),
		   jsonb_build_object('correlation_id', 'c-' || g), now()
		 FROM generate_series(1, $1) g, generate_series(1, 2) v ORDER BY g, v`,
	} {
		if _, err := p.pg.Pool.Exec(ctx, sql, n); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := p.pg.Pool.Exec(ctx, outbox.CopyFromEventsSQL); err != nil {
		t.Fatal(err)
	}
	p.projector(t, "projector", "VERIFY_RATE=0", "PROJECTIONS=products")
	waitFor(t, 8*time.Minute, "the projection caught up", func() bool {
		var pending int
		_ = p.pg.Pool.QueryRow(ctx, `SELECT count(*) FROM outbox`).Scan(&pending)
		if pending > 0 {
			return false
		}
		c, err := esindex.Count(ctx, p.es, esindex.AliasName(p.indexPrefix, "products"))
		return err == nil && c == int64(n)
	})
	t.Logf("%d aggregates (%d events) filled and projected in %s", n, 2*n, time.Since(fill).Round(time.Second))

	var rep projector.VerifyReport
	var rss int64
	var took time.Duration
	var timeV []string
	waitFor(t, time.Minute, "verify --all clean", func() bool {
		args := []string{binary(t), "verify", "--json", "--projection", "products", "--all", "--margin", "1s",
			"--page-rows", strconv.Itoa(pageRows)}
		if os.Getenv("VERIFY_MEM_TIME") != "" {
			// GNU time -v for the record in BENCHMARKS.md; wait4's
			// maximum RSS below includes the waited-for grandchild.
			args = append([]string{"/usr/bin/time", "-v"}, args...)
		}
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Env = p.env()
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		start := time.Now()
		err := cmd.Run()
		took = time.Since(start)
		rss = cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss // KiB
		timeV = timeV[:0]
		for _, l := range strings.Split(stderr.String(), "\n") {
			if strings.Contains(l, "Elapsed (wall clock)") || strings.Contains(l, "Maximum resident set size") ||
				strings.Contains(l, "User time") || strings.Contains(l, "System time") {
				timeV = append(timeV, strings.TrimSpace(l))
			}
		}
		rep = projector.VerifyReport{}
		return err == nil && json.Unmarshal(stdout.Bytes(), &rep) == nil && rep.Counts[projector.ResultEqual] == n
	})
	if len(timeV) > 0 {
		t.Logf("/usr/bin/time -v: %s", strings.Join(timeV, "; "))
	}
	t.Logf("verify --all: %d aggregates, %d events in %s (%.0f aggregates/s), peak RSS %.1f MiB, at most %d rows held",
		rep.Checked, rep.Stats.Events, took.Round(time.Millisecond), float64(rep.Checked)/took.Seconds(), float64(rss)/1024, rep.Stats.MaxRowsHeld)
	if rep.Stats.MaxRowsHeld > pageRows || rep.Stats.Events != int64(2*n) {
		t.Errorf("held %d rows at once (page %d), read %d events of %d", rep.Stats.MaxRowsHeld, pageRows, rep.Stats.Events, 2*n)
	}
	if rss/1024 > int64(maxMB) {
		t.Errorf("peak RSS %d MiB, over the %d MiB bound", rss/1024, maxMB)
	}
}

func envInt(t *testing.T, name string, def int) int {
	t.Helper()
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		t.Fatalf("%s=%q: want a positive integer", name, s)
	}
	return n
}
