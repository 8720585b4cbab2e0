//go:build integration

package catalog_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"cqrsflow/internal/auth"
	"cqrsflow/internal/catalog"
	"cqrsflow/internal/envelope"
	"cqrsflow/internal/eventschema"
	"cqrsflow/internal/eventstore"
	"cqrsflow/internal/httpapi"
	"cqrsflow/internal/projection"
	"cqrsflow/internal/projector"
	"cqrsflow/internal/query"
	"cqrsflow/internal/testenv"
)

// note is the example read model of docs/extending.md: a note's text.
type note struct {
	projection.Base
	Text string `json:"text"`
}

// notes folds NoteWritten events: the first starts the note, each later
// one replaces its text.
var notes = projection.Adapter[note]{ProjectionName: "notes", Aggregate: "note",
	MappingJSON: []byte(`{"mappings":{"dynamic":"strict","properties":{
		"id":{"type":"keyword"},"version":{"type":"long"},"deleted":{"type":"boolean"},
		"created_at":{"type":"date"},"updated_at":{"type":"date"},"last_event_id":{"type":"keyword"},
		"recorded_at":{"type":"date"},"text":{"type":"text"}}}}`),
	Fold: func(cur *note, env *envelope.Envelope) (*note, error) {
		if env.EventType != "NoteWritten" {
			return nil, projection.Unprojectable("unknown note event type %q", env.EventType)
		}
		var p struct {
			Text string `json:"text"`
		}
		if err := projection.DecodePayload(env, &p); err != nil {
			return nil, err
		}
		next := note{Base: projection.Start(env)}
		if cur != nil {
			next = *cur
			next.Advance(env)
		}
		next.Text = p.Text
		return &next, nil
	}}

// TestExampleReadModelThroughTheCatalog proves the walk-through of
// docs/extending.md: one catalog entry (no code in the projector, the
// api's engine or the query package) makes the projector consume the
// note topic and the api serve the notes read model, read-your-writes
// included.
func TestExampleReadModelThroughTheCatalog(t *testing.T) {
	saved := catalog.Entries
	catalog.Entries = append(append([]catalog.Entry(nil), saved...), catalog.Entry{AggregateType: "note", Projection: notes})
	t.Cleanup(func() { catalog.Entries = saved })

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	es := testenv.Elasticsearch(t)
	prefix := testenv.IndexPrefix(t)
	topicPrefix := testenv.Name(t)
	topic := envelope.Topic(topicPrefix, "note")
	adm := testenv.KafkaAdmin(t)
	testenv.CreateTopic(t, adm, topic, 2)

	// The projector side, as `projector run -projections notes` wires it.
	proj, err := catalog.Projection("notes")
	if err != nil {
		t.Fatal(err)
	}
	alias, err := projector.EnsureReadModel(ctx, es, prefix, proj)
	if err != nil {
		t.Fatal(err)
	}
	group := projector.GroupName(topicPrefix, proj.Name(), 0)
	r, err := projector.New(projector.Config{Brokers: testenv.KafkaBrokers(), Group: group, Topic: topic, Index: alias,
		BatchMaxRecords: 100, FlushInterval: 10 * time.Millisecond, DLQPartitions: 1}, proj, es,
		projector.NewMetrics(prometheus.NewRegistry()), log)
	if err != nil {
		t.Fatal(err)
	}
	rctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(rctx) }()
	t.Cleanup(func() {
		stop()
		<-done
		_, _ = adm.DeleteGroups(context.Background(), group)
		_, _ = adm.DeleteTopics(context.Background(), envelope.DLQTopic(topic), projector.QuarantineTopic(topic))
	})

	// The api side, as `api serve` wires it.
	const key = "example-read-key-0123456789"
	keys, err := auth.ParseKeys("reader:"+key+":read", "")
	if err != nil {
		t.Fatal(err)
	}
	schemas, err := eventschema.Load()
	if err != nil {
		t.Fatal(err)
	}
	engine, err := httpapi.NewEngine(httpapi.DefaultConfig(), httpapi.Deps{Store: noStore{}, Schemas: schemas,
		Auth: &auth.Authenticator{Keys: keys}, Registerer: prometheus.NewRegistry(),
		Modules: catalog.Modules(query.New(es, prefix, log))})
	if err != nil {
		t.Fatal(err)
	}
	api := httptest.NewServer(engine)
	defer api.Close()

	// Two events of one note, as the relay would publish them.
	id := uuid.NewString()
	prod, err := kgo.NewClient(kgo.SeedBrokers(testenv.KafkaBrokers()...))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	for v, text := range []string{"first draft", "final text"} {
		env := envelope.Envelope{EventID: uuid.NewString(), EventType: "NoteWritten", SchemaVersion: 1, AggregateType: "note",
			AggregateID: id, Version: int64(v + 1), OccurredAt: time.Now().UTC(), RecordedAt: time.Now().UTC(),
			Payload: json.RawMessage(`{"text":"` + text + `"}`)}
		b, _ := json.Marshal(env)
		if err := prod.ProduceSync(ctx, &kgo.Record{Topic: topic, Key: []byte(id), Value: b}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}

	get := func(path string) (int, http.Header, map[string]any) {
		req, _ := http.NewRequestWithContext(ctx, "GET", api.URL+path, nil)
		req.Header.Set("Authorization", "Bearer "+key)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var body map[string]any
		_ = json.NewDecoder(res.Body).Decode(&body)
		return res.StatusCode, res.Header, body
	}
	status, hdr, doc := get("/v1/notes/" + id + "?min_version=2&wait=10s")
	if status != 200 || hdr.Get(query.HeaderVersion) != "2" || hdr.Get(query.HeaderStale) != "" || doc["text"] != "final text" {
		t.Fatalf("GET /v1/notes/{id}: %d, version %q, stale %q, %v", status, hdr.Get(query.HeaderVersion), hdr.Get(query.HeaderStale), doc)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		status, _, page := get("/v1/notes")
		if status == 200 && page["total"] == float64(1) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET /v1/notes: %d %v", status, page)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if status, _, _ := get("/v1/notes/not-a-uuid"); status != 400 {
		t.Fatalf("malformed id: %d, want 400", status)
	}
	req, _ := http.NewRequestWithContext(ctx, "GET", api.URL+"/v1/notes/"+id, nil)
	if res, err := http.DefaultClient.Do(req); err != nil || res.StatusCode != 401 {
		t.Fatalf("anonymous read: %v %v, want 401", res.StatusCode, err)
	}
}

// noStore: the example registers no commands.
type noStore struct{}

func (noStore) Execute(context.Context, eventstore.Command) (eventstore.Result, error) {
	return eventstore.Result{}, eventstore.ErrNotFound
}
