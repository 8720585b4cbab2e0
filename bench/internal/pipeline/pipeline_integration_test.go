//go:build integration

package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"

	"cqrsflow/bench/internal/result"
	"cqrsflow/internal/testenv"
)

func esDo(t *testing.T, method, path, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, testenv.ElasticsearchURL()+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// The poller sees a document only once a search returns it (after a
// refresh), and only at the version it waits for; a missing alias is no
// hit, not an error.
func TestVisPollerAgainstElasticsearch(t *testing.T) {
	prefix := testenv.IndexPrefix(t)
	index, alias := prefix+"-products_v1", prefix+"-products"
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	p := newVisPoller(testenv.ElasticsearchURL(), alias, 20*time.Millisecond)
	if found, err := p.search(ctx, []string{"a"}); err != nil || len(found) != 0 {
		t.Fatalf("search on a missing alias = %v, %v; want no hit, no error", found, err)
	}

	if code, body := esDo(t, http.MethodPut, "/"+index, `{"settings":{"number_of_shards":1,"number_of_replicas":0,"refresh_interval":"-1"},
		"aliases":{"`+alias+`":{}},"mappings":{"properties":{"name":{"type":"text"}}}}`); code != 200 {
		t.Fatalf("creating %s: %d %s", index, code, body)
	}
	for id, v := range map[string]int{"p1": 3, "p2": 1} {
		if code, body := esDo(t, http.MethodPut, fmt.Sprintf("/%s/_doc/%s?version=%d&version_type=external", index, id, v), `{"name":"lamp"}`); code != 201 {
			t.Fatalf("indexing %s: %d %s", id, code, body)
		}
	}
	now := time.Now()
	s1 := &visSample{ID: "p1", Version: 3, Committed: now}
	s2 := &visSample{ID: "p2", Version: 2, Committed: now} // the index holds only v1
	s3 := &visSample{ID: "p3", Version: 1, Committed: now} // never indexed
	for _, s := range []*visSample{s1, s2, s3} {
		p.add(s)
	}
	p.pollOnce(ctx)
	if p.pendingCount() != 3 {
		t.Fatalf("before a refresh %d samples pending, want 3 (GET would be realtime; _search must not be)", p.pendingCount())
	}
	if code, body := esDo(t, http.MethodPost, "/"+index+"/_refresh", ""); code != 200 {
		t.Fatalf("refresh: %d %s", code, body)
	}
	p.pollOnce(ctx)
	if s1.Visible.IsZero() || s1.Visible.Before(now) {
		t.Errorf("p1 at v3 not seen after the refresh: %+v", s1)
	}
	if !s2.Visible.IsZero() || !s3.Visible.IsZero() || p.pendingCount() != 2 {
		t.Errorf("p2 (older version) or p3 (absent) counted as searchable: %+v %+v pending %d", s2, s3, p.pendingCount())
	}
	if st := p.stats(); st.Searches < 2 || st.Errors != 0 || st.MeanRTT <= 0 || st.MaxRTT < st.MeanRTT {
		t.Errorf("stats: %+v", st)
	}

	// Batching: more pending ids than one request holds still resolve.
	p.Batch = 1
	if code, body := esDo(t, http.MethodPut, fmt.Sprintf("/%s/_doc/p2?version=2&version_type=external&refresh=true", index), `{"name":"lamp"}`); code != 200 {
		t.Fatalf("updating p2: %d %s", code, body)
	}
	p.pollOnce(ctx)
	if s2.Visible.IsZero() || p.pendingCount() != 1 {
		t.Errorf("after p2 reached v2: %+v, pending %d", s2, p.pendingCount())
	}
}

// cleanup removes exactly the run's schema, topics, groups and indices and
// leaves names of other runs alone.
func TestPipelineCleanupRemovesOnlyItsOwnNames(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cfg := pipelineConfig{
		PostgresURL: testenv.PostgresURL(), KafkaBrokers: strings.Join(testenv.KafkaBrokers(), ","),
		ElasticsearchURL: testenv.ElasticsearchURL(), MaxInFlight: 4, PollInterval: time.Second,
	}
	pl, err := newPipeline(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := pl.createSchema(ctx); err != nil {
		t.Fatalf("createSchema: %v", err)
	}
	conn, err := pgx.Connect(ctx, pl.pgURL)
	if err != nil {
		t.Fatal(err)
	}
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM outbox").Scan(&n); err != nil {
		t.Fatalf("the run's schema is not migrated (outbox missing): %v", err)
	}
	conn.Close(ctx)

	// Names of this run, and a bystander of another run.
	adm := testenv.KafkaAdmin(t)
	other := testenv.Topic(t, 1) // deleted by testenv
	mine := pl.topicPrefix + ".product.events"
	if resp, err := adm.CreateTopics(ctx, 1, 1, nil, mine); err != nil || resp.Error() != nil {
		t.Fatalf("creating %s: %v %v", mine, err, resp.Error())
	}
	group := pl.topicPrefix + "-projector-products"
	offs := kadm.Offsets{}
	offs.AddOffset(mine, 0, 0, -1)
	// The group coordinator learns of a new topic through metadata
	// propagation: a commit right after CreateTopics can briefly answer
	// UNKNOWN_TOPIC_OR_PARTITION, so retry that one error, bounded.
	for deadline := time.Now().Add(15 * time.Second); ; {
		err := adm.CommitAllOffsets(ctx, group, offs)
		if err == nil {
			break
		}
		if !errors.Is(err, kerr.UnknownTopicOrPartition) || time.Now().After(deadline) {
			t.Fatalf("committing for %s: %v", group, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if code, body := esDo(t, http.MethodPut, "/"+pl.indexPrefix+"products_v1", `{"aliases":{"`+pl.alias+`":{}}}`); code != 200 {
		t.Fatalf("creating index: %d %s", code, body)
	}
	otherIndex := testenv.IndexPrefix(t) + "-keep"
	if code, body := esDo(t, http.MethodPut, "/"+otherIndex, ""); code != 200 {
		t.Fatalf("creating %s: %d %s", otherIndex, code, body)
	}

	if err := pl.cleanup(); err != nil {
		t.Fatalf("cleanup: %v", err)
	}

	topics, err := adm.ListTopics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if topics.Has(mine) {
		t.Errorf("topic %s survived", mine)
	}
	if !topics.Has(other) {
		t.Errorf("another run's topic %s was deleted", other)
	}
	groups, err := adm.ListGroups(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := groups[group]; ok {
		t.Errorf("group %s survived", group)
	}
	if code, _ := esDo(t, http.MethodGet, "/"+pl.indexPrefix+"products_v1", ""); code != 404 {
		t.Errorf("index of the run survived: GET = %d", code)
	}
	if code, _ := esDo(t, http.MethodGet, "/"+otherIndex, ""); code != 200 {
		t.Errorf("another run's index was deleted: GET = %d", code)
	}
	admin, err := pgx.Connect(ctx, testenv.PostgresURL())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	var exists bool
	if err := admin.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM information_schema.schemata WHERE schema_name = $1)", pl.schema).Scan(&exists); err != nil {
		t.Fatal(err)
	}
	if exists {
		t.Errorf("schema %s survived", pl.schema)
	}
}

// The whole part through the real binaries: a short rate, a result file
// with searchable samples and memory rows, and nothing left behind.
func TestPipelinePartEndToEnd(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	admin, err := pgx.Connect(ctx, testenv.PostgresURL())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(context.Background())
	benchSchemas := func() map[string]bool {
		rows, err := admin.Query(ctx, `SELECT schema_name FROM information_schema.schemata WHERE schema_name ~ '^bench_[0-9a-f]{8}$'`)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]bool{}
		for rows.Next() {
			var s string
			_ = rows.Scan(&s)
			out[s] = true
		}
		return out
	}
	before := benchSchemas()

	dir := t.TempDir()
	t.Setenv(result.QuickEnv, "")
	t.Setenv(result.DirEnv, dir)
	t.Setenv("POSTGRES_URL", testenv.PostgresURL())
	t.Setenv("KAFKA_BROKERS", strings.Join(testenv.KafkaBrokers(), ","))
	t.Setenv("ELASTICSEARCH_URL", testenv.ElasticsearchURL())
	err = Run(ctx, []string{"-rates", "50", "-step", "3s", "-warmup", "0",
		"-probes", "0", "-bisect", "0", "-drain", "20s"})
	if err != nil {
		t.Fatalf("pipeline part: %v", err)
	}
	results, err := result.Load()
	if err != nil || len(results) != 1 || results[0].Part != "pipeline" {
		t.Fatalf("results %+v, %v", results, err)
	}
	rows := map[string]result.Row{}
	for _, r := range results[0].Rows {
		rows[r.Name] = r
	}
	if r, ok := rows["e2e commit→searchable p99 @ 50 writes/s"]; !ok || r.Value <= 0 || r.Value > 30000 {
		t.Errorf("e2e row = %+v (ok %v), want a measured latency", r, ok)
	}
	for _, p := range []string{"api", "outbox-relay", "projector-1"} {
		if r := rows["peak RSS "+p]; r.Value < 1 || r.Unit != "MiB" {
			t.Errorf("peak RSS of %s = %+v", p, r)
		}
	}
	lat := results[0].Tables[0]
	if len(lat.Rows) != 1 || lat.Rows[0][9] != "0" || !strings.HasSuffix(lat.Rows[0][10], "(0)") {
		t.Errorf("rate table %v: want no errors and no missing samples", lat.Rows)
	}
	for s := range benchSchemas() {
		if !before[s] {
			t.Errorf("schema %s left behind", s)
		}
	}
}
