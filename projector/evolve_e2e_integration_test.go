//go:build integration

package main_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/uuid"

	"cqrsflow/internal/eventstore"
	"cqrsflow/internal/query"
	"cqrsflow/internal/testenv"
)

// writeV1 appends events as the api wrote them before v2 (the store
// appends them with their outbox rows; the relay publishes them as
// stored).
func writeV1(t *testing.T, pg *testenv.PG, id string, expected int64, payloads ...string) {
	t.Helper()
	s := eventstore.New(pg.Pool)
	defer s.Close()
	cmd := eventstore.Command{AggregateType: "product", AggregateID: id, ExpectedVersion: expected}
	for i, p := range payloads {
		typ := "ProductUpdated"
		if expected == eventstore.NoAggregate && i == 0 {
			typ = "ProductCreated"
		}
		cmd.Events = append(cmd.Events, eventstore.NewEvent{Type: typ, SchemaVersion: 1, Payload: json.RawMessage(p)})
	}
	if _, err := s.Execute(context.Background(), cmd); err != nil {
		t.Fatal(err)
	}
}

func (s e2eStack) read(t *testing.T, id string, version int64) query.Product {
	t.Helper()
	var p query.Product
	if st := s.api.do(t, "GET", fmt.Sprintf("/v1/products/%s?min_version=%d&wait=10s", id, version), nil, nil, &p); st != 200 || p.Version != version {
		t.Fatalf("read %s at v%d: %d %+v", id, version, st, p)
	}
	return p
}

func (s e2eStack) put(t *testing.T, id string, body map[string]any, want int64) {
	t.Helper()
	var w written
	if st := s.api.do(t, "PUT", "/v1/products/"+id, body, nil, &w); st != 200 || w.Version != want {
		t.Fatalf("update %s: %d %+v, want v%d", id, st, w, want)
	}
}

func snapshotState(t *testing.T, pg *testenv.PG, id string) (int64, string) {
	t.Helper()
	var v int64
	var st string
	if err := pg.Pool.QueryRow(context.Background(), `SELECT version, state::text FROM aggregate_snapshots
		WHERE aggregate_type = 'product' AND aggregate_id = $1`, id).Scan(&v, &st); err != nil {
		t.Fatalf("snapshot of %s: %v", id, err)
	}
	return v, st
}

// Events stored at v1 (by the api before v2) and at v2, through the api,
// PostgreSQL, the relay, Kafka and the projector, give the same document
// as the same history written at v2; an aggregate with 10 000 events
// updates correctly, and `api snapshots rebuild` leaves its state as it
// was.
func TestMixedSchemaVersionsAndLongHistoryEndToEnd(t *testing.T) {
	s := startE2E(t, e2eOptions{})

	// The same product history twice: v1, v1, then v2 through the api;
	// and v2 throughout, through the api.
	mixed := uuid.NewString()
	writeV1(t, s.pg, mixed, eventstore.NoAggregate,
		`{"name":"Lamp","description":"<warm>","price":10,"stock":1}`,
		`{"name":"Lamp 2","description":"<warm>","price":12.5,"stock":2}`)
	var v2 written
	if st := s.api.do(t, "POST", "/v1/products", map[string]any{"name": "Lamp", "description": "<warm>", "price": 10, "stock": 1}, nil, &v2); st != 201 {
		t.Fatalf("create: %d", st)
	}
	s.put(t, v2.ID, map[string]any{"name": "Lamp 2", "description": "<warm>", "price": 12.5, "stock": 2}, 2)
	for _, id := range []string{mixed, v2.ID} {
		s.put(t, id, map[string]any{"name": "Lamp 3", "description": "<warm>", "price": 13, "stock": 3}, 3) // keeps EUR
	}
	a, b := s.read(t, mixed, 3), s.read(t, v2.ID, 3)
	a.ID, a.CreatedAt, a.UpdatedAt = b.ID, b.CreatedAt, b.UpdatedAt
	if a != b || b.Currency != "EUR" || b.Name != "Lamp 3" {
		t.Errorf("mixed history reads %+v, all-v2 history %+v", a, b)
	}
	for _, id := range []string{mixed, v2.ID} {
		s.put(t, id, map[string]any{"name": "Lamp 4", "description": "", "price": 14, "currency": "USD", "stock": 4}, 4)
	}
	a, b = s.read(t, mixed, 4), s.read(t, v2.ID, 4)
	a.ID, a.CreatedAt, a.UpdatedAt = b.ID, b.CreatedAt, b.UpdatedAt
	if a != b || b.Currency != "USD" {
		t.Errorf("after a v2 update in USD: mixed %+v, all-v2 %+v", a, b)
	}

	// 10 000 events: a create and 9 998 updates at v1, then updates
	// through the api.
	long := uuid.NewString()
	payloads := make([]string, 9999)
	for i := range payloads {
		payloads[i] = fmt.Sprintf(`{"name":"Long %d","description":"","price":%d,"stock":%d}`, i, i%100, i)
	}
	writeV1(t, s.pg, long, eventstore.NoAggregate, payloads...)
	s.put(t, long, map[string]any{"name": "Long last", "description": "ten thousand", "price": 99.99, "stock": 10000}, 10000)
	if p := s.read(t, long, 10000); p.Name != "Long last" || p.Price != 99.99 || p.Currency != "EUR" || p.Stock != 10000 {
		t.Errorf("after 10 000 events: %+v", p)
	}
	before, beforeState := snapshotState(t, s.pg, long)
	if before != 10000 {
		t.Fatalf("snapshot at v%d, want v10000", before)
	}
	out, err := exec.Command(filepath.Join(s.bins, "api"), "snapshots", "rebuild", "-postgres-url", s.pg.URL).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "product: 3 snapshots rebuilt") {
		t.Fatalf("api snapshots rebuild: %v\n%s", err, out)
	}
	after, afterState := snapshotState(t, s.pg, long)
	if after != before || afterState != beforeState {
		t.Errorf("rebuild changed the state: v%d %s, was v%d %s", after, afterState, before, beforeState)
	}
	s.put(t, long, map[string]any{"name": "Long after", "description": "", "price": 1, "currency": "JPY", "stock": 1}, 10001)
	if p := s.read(t, long, 10001); p.Name != "Long after" || p.Currency != "JPY" {
		t.Errorf("after the rebuild: %+v", p)
	}
}
