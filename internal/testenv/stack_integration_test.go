//go:build integration

// Smoke tests of the local stack (deploy/local, `make up`): each talks to
// the real service through the same client library the pipeline uses and
// checks that what it wrote comes back.
package testenv_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/elastic/go-elasticsearch/v8/esapi"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kgo"

	"cqrsflow/internal/testenv"
)

func timeout(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// PostgreSQL: an event row written into the test's private, migrated schema
// reads back with the database-assigned position and timestamp.
func TestStackPostgresRoundTrip(t *testing.T) {
	t.Parallel()
	pg := testenv.Postgres(t)
	ctx := timeout(t, 30*time.Second)

	var schema, walLevel string
	if err := pg.Pool.QueryRow(ctx, "SELECT current_schema(), current_setting('wal_level')").Scan(&schema, &walLevel); err != nil {
		t.Fatalf("reading session settings: %v", err)
	}
	if schema != pg.Schema {
		t.Fatalf("current_schema() = %q, want the test schema %q", schema, pg.Schema)
	}
	if walLevel != "logical" {
		t.Errorf("wal_level = %q, want logical (deploy/local/pg.sh sets it)", walLevel)
	}

	eventID := uuid.New()
	occurred := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	payload := map[string]any{"name": "Lamp", "price": 12.5}
	var pos int64
	err := pg.Pool.QueryRow(ctx, `
		INSERT INTO events (event_id, aggregate_type, aggregate_id, version, event_type, schema_version, payload, occurred_at)
		VALUES ($1, 'product', 'p-1', 1, 'ProductCreated', 1, $2, $3)
		RETURNING global_position`, eventID, payload, occurred).Scan(&pos)
	if err != nil {
		t.Fatalf("inserting event: %v", err)
	}
	if pos <= 0 {
		t.Fatalf("global_position = %d, want > 0", pos)
	}

	var (
		gotID       uuid.UUID
		gotType     string
		gotPayload  map[string]any
		gotOccurred time.Time
		recordedAt  time.Time
	)
	err = pg.Pool.QueryRow(ctx, `
		SELECT event_id, event_type, payload, occurred_at, recorded_at
		FROM events WHERE global_position = $1`, pos).Scan(&gotID, &gotType, &gotPayload, &gotOccurred, &recordedAt)
	if err != nil {
		t.Fatalf("reading event %d: %v", pos, err)
	}
	if gotID != eventID || gotType != "ProductCreated" || !gotOccurred.Equal(occurred) {
		t.Errorf("read back (%s, %s, %s), want (%s, ProductCreated, %s)", gotID, gotType, gotOccurred, eventID, occurred)
	}
	if gotPayload["name"] != "Lamp" || gotPayload["price"] != 12.5 {
		t.Errorf("payload = %v, want name Lamp, price 12.5", gotPayload)
	}
	if recordedAt.IsZero() || time.Since(recordedAt) > time.Minute {
		t.Errorf("recorded_at = %s, want the database's clock at insert", recordedAt)
	}

	// The unique (aggregate_type, aggregate_id, version) constraint holds.
	_, err = pg.Pool.Exec(ctx, `
		INSERT INTO events (event_id, aggregate_type, aggregate_id, version, event_type, schema_version, payload, occurred_at)
		VALUES ($1, 'product', 'p-1', 1, 'ProductUpdated', 1, '{}', now())`, uuid.New())
	if err == nil {
		t.Fatal("a second event with the same aggregate version was accepted")
	}

	// The schema is private: the default search path does not see the table.
	conn, err := pgx.Connect(ctx, testenv.PostgresURL())
	if err != nil {
		t.Fatalf("connecting without search_path: %v", err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM "+pgx.Identifier{pg.Schema, "events"}.Sanitize()).Scan(&n); err != nil {
		t.Fatalf("counting events in %s: %v", pg.Schema, err)
	}
	if n != 1 {
		t.Errorf("%s.events has %d rows, want 1", pg.Schema, n)
	}
}

// Kafka: records produced with acks=all are consumed through a consumer
// group; the committed offsets equal the partitions' end offsets, and a new
// member of the group resumes after them.
func TestStackKafkaConsumerGroupCommit(t *testing.T) {
	t.Parallel()
	ctx := timeout(t, 60*time.Second)
	adm := testenv.KafkaAdmin(t)
	topic := testenv.Topic(t, 3)
	group := "g-" + topic
	t.Cleanup(func() {
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := adm.DeleteGroups(cctx, group); err != nil {
			t.Logf("cleanup: deleting group %s: %v", group, err)
		}
	})

	prod, err := kgo.NewClient(
		kgo.SeedBrokers(testenv.KafkaBrokers()...),
		kgo.DefaultProduceTopic(topic),
		kgo.RequiredAcks(kgo.AllISRAcks()),
	)
	if err != nil {
		t.Fatalf("producer: %v", err)
	}
	defer prod.Close()

	const n = 30
	want := make([]string, 0, n)
	recs := make([]*kgo.Record, 0, n)
	for i := range n {
		v := fmt.Sprintf("value-%02d", i)
		want = append(want, v)
		recs = append(recs, &kgo.Record{Key: fmt.Appendf(nil, "key-%d", i%7), Value: []byte(v)})
	}
	if err := prod.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("producing %d records: %v", n, err)
	}

	cons := newGroupConsumer(t, topic, group)
	got := pollValues(ctx, t, cons, n)
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Fatalf("consumed %v\nwant %v", got, want)
	}
	if err := cons.CommitUncommittedOffsets(ctx); err != nil {
		t.Fatalf("committing offsets: %v", err)
	}
	cons.Close() // leaves the group

	committed, err := adm.FetchOffsets(ctx, group)
	if err != nil {
		t.Fatalf("fetching committed offsets of %s: %v", group, err)
	}
	if err := committed.Error(); err != nil {
		t.Fatalf("committed offsets of %s: %v", group, err)
	}
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatalf("listing end offsets of %s: %v", topic, err)
	}
	var total int64
	for p := int32(0); p < 3; p++ {
		end, ok := ends.Lookup(topic, p)
		if !ok || end.Err != nil {
			t.Fatalf("end offset of %s/%d: ok=%v err=%v", topic, p, ok, end.Err)
		}
		c, ok := committed.Lookup(topic, p)
		if end.Offset > 0 && !ok {
			t.Fatalf("no committed offset for %s/%d (end offset %d)", topic, p, end.Offset)
		}
		if ok && c.At != end.Offset {
			t.Errorf("committed offset of %s/%d = %d, want the end offset %d", topic, p, c.At, end.Offset)
		}
		total += c.At
	}
	if total != n {
		t.Errorf("committed offsets sum to %d, want %d", total, n)
	}

	// A new member of the same group starts after the committed offsets.
	if err := prod.ProduceSync(ctx, &kgo.Record{Key: []byte("key-late"), Value: []byte("late")}).FirstErr(); err != nil {
		t.Fatalf("producing the late record: %v", err)
	}
	again := newGroupConsumer(t, topic, group)
	defer again.Close()
	if got := pollValues(ctx, t, again, 1); got[0] != "late" {
		t.Errorf("after a restart the group consumed %q first, want \"late\" (committed offsets not used)", got[0])
	}
}

func newGroupConsumer(t *testing.T, topic, group string) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(testenv.KafkaBrokers()...),
		kgo.ConsumerGroup(group),
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.DisableAutoCommit(),
	)
	if err != nil {
		t.Fatalf("consumer: %v", err)
	}
	return cl
}

func pollValues(ctx context.Context, t *testing.T, cl *kgo.Client, n int) []string {
	t.Helper()
	var got []string
	for len(got) < n {
		fetches := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("got %d of %d records before the deadline: %v", len(got), n, ctx.Err())
		}
		if errs := fetches.Errors(); len(errs) > 0 {
			t.Fatalf("fetch errors: %v", errs)
		}
		fetches.EachRecord(func(r *kgo.Record) { got = append(got, string(r.Value)) })
	}
	return got
}

// Elasticsearch: an index created with an explicit mapping takes a bulk
// request; after a refresh a multi_match query over two text fields finds
// exactly the matching documents, best match first.
func TestStackElasticsearchBulkSearch(t *testing.T) {
	t.Parallel()
	es := testenv.Elasticsearch(t)
	index := testenv.IndexPrefix(t) + "-products"
	ctx := timeout(t, 60*time.Second)

	mapping := `{
	  "settings": {"number_of_shards": 1, "number_of_replicas": 0},
	  "mappings": {"dynamic": "strict", "properties": {
	    "name": {"type": "text"},
	    "description": {"type": "text"},
	    "price": {"type": "double"},
	    "version": {"type": "long"}
	  }}
	}`
	res, err := es.Indices.Create(index, es.Indices.Create.WithBody(strings.NewReader(mapping)), es.Indices.Create.WithContext(ctx))
	mustOK(t, "creating index "+index, res, err)
	res.Body.Close()

	docs := []struct {
		id   string
		body string
	}{
		{"p1", `{"name":"Wireless mouse","description":"A small mouse","price":19.9,"version":1}`},
		{"p2", `{"name":"Desk lamp","description":"Warm light for the desk","price":24,"version":1}`},
		{"p3", `{"name":"Keyboard","description":"Mechanical keyboard, wireless and quiet","price":79,"version":2}`},
		{"p4", `{"name":"Monitor","description":"27 inch screen","price":199,"version":1}`},
	}
	var bulk bytes.Buffer
	for _, d := range docs {
		fmt.Fprintf(&bulk, `{"index":{"_index":%q,"_id":%q}}`+"\n%s\n", index, d.id, d.body)
	}
	res, err = es.Bulk(&bulk, es.Bulk.WithContext(ctx), es.Bulk.WithRefresh("true"))
	mustOK(t, "bulk indexing", res, err)
	var bulkResp struct {
		Errors bool `json:"errors"`
		Items  []map[string]struct {
			Status int `json:"status"`
		} `json:"items"`
	}
	decode(t, res, &bulkResp)
	if bulkResp.Errors || len(bulkResp.Items) != len(docs) {
		t.Fatalf("bulk: errors=%v items=%d, want no errors and %d items", bulkResp.Errors, len(bulkResp.Items), len(docs))
	}
	for i, it := range bulkResp.Items {
		if it["index"].Status != 201 {
			t.Errorf("bulk item %d: status %d, want 201", i, it["index"].Status)
		}
	}

	// The strict mapping rejects an unknown field (the mapping is in force).
	res, err = es.Index(index, strings.NewReader(`{"name":"x","colour":"red"}`), es.Index.WithContext(ctx))
	if err != nil {
		t.Fatalf("indexing with an unknown field: %v", err)
	}
	res.Body.Close()
	if res.StatusCode != 400 {
		t.Errorf("indexing an unmapped field under dynamic=strict: status %d, want 400", res.StatusCode)
	}

	search := func(q string) []string {
		t.Helper()
		body := fmt.Sprintf(`{"query":{"multi_match":{"query":%q,"fields":["name^2","description"]}}}`, q)
		res, err := es.Search(es.Search.WithIndex(index), es.Search.WithBody(strings.NewReader(body)), es.Search.WithContext(ctx))
		mustOK(t, "searching "+q, res, err)
		var sr struct {
			Hits struct {
				Total struct {
					Value int `json:"value"`
				} `json:"total"`
				Hits []struct {
					ID string `json:"_id"`
				} `json:"hits"`
			} `json:"hits"`
		}
		decode(t, res, &sr)
		ids := make([]string, 0, len(sr.Hits.Hits))
		for _, h := range sr.Hits.Hits {
			ids = append(ids, h.ID)
		}
		if sr.Hits.Total.Value != len(ids) {
			t.Errorf("search %q: total %d but %d hits returned", q, sr.Hits.Total.Value, len(ids))
		}
		return ids
	}
	// "wireless" is in p1's name (boosted) and in p3's description.
	if got := search("wireless"); !slices.Equal(got, []string{"p1", "p3"}) {
		t.Errorf("multi_match wireless = %v, want [p1 p3] (name match ranked first)", got)
	}
	if got := search("desk"); !slices.Equal(got, []string{"p2"}) {
		t.Errorf("multi_match desk = %v, want [p2]", got)
	}
	if got := search("toaster"); len(got) != 0 {
		t.Errorf("multi_match toaster = %v, want no hits", got)
	}
}

func mustOK(t *testing.T, what string, res *esapi.Response, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if res.IsError() {
		defer res.Body.Close()
		t.Fatalf("%s: %s", what, res.String())
	}
}

func decode(t *testing.T, res *esapi.Response, v any) {
	t.Helper()
	defer res.Body.Close()
	if err := json.NewDecoder(res.Body).Decode(v); err != nil {
		t.Fatalf("decoding %s response: %v", res.Status(), err)
	}
}
