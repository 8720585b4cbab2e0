//go:build integration

package projector

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"cqrsflow/internal/testenv"
)

// TestEventsOfReadsOnlyTheirAggregates: reading the events of a few
// aggregates (the continuous verifier does it every second) reads index
// and heap pages of those aggregates only, however many events the store
// holds, under the plan PostgreSQL makes for the values at hand and under
// the generic one; and it pages by (aggregate_id, version) as before.
func TestEventsOfReadsOnlyTheirAggregates(t *testing.T) {
	pg := testenv.Postgres(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const aggregates = 25000 // two events each
	if _, err := pg.Pool.Exec(ctx, `INSERT INTO events (event_id, aggregate_type, aggregate_id, version, event_type,
		schema_version, payload, occurred_at)
		SELECT gen_random_uuid(), 'product', 'p-' || lpad((i % $1)::text, 6, '0'), i / $1 + 1, 'ProductCreated', 1,
			'{"name":"x"}', now()
		FROM generate_series(0, 2 * $1 - 1) i`, aggregates); err != nil {
		t.Fatal(err)
	}
	if _, err := pg.Pool.Exec(ctx, `ANALYZE events`); err != nil {
		t.Fatal(err)
	}
	ids := []string{"p-000005", "p-012345", "p-024999"}

	store := NewEventStore(pg.Pool, "product")
	var got []string
	afterID, afterV := "", int64(0)
	for range 10 {
		rows, err := store.Events(ctx, ids, afterID, afterV, 2)
		if err != nil {
			t.Fatal(err)
		}
		if len(rows) == 0 {
			break
		}
		for _, r := range rows {
			got = append(got, fmt.Sprintf("%s/%d", r.AggregateID, r.Version))
		}
		afterID, afterV = rows[len(rows)-1].AggregateID, rows[len(rows)-1].Version
	}
	want := []string{"p-000005/1", "p-000005/2", "p-012345/1", "p-012345/2", "p-024999/1", "p-024999/2"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("events in pages of 2: %v, want %v", got, want)
	}

	conn, err := pg.Pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	for _, mode := range []string{"force_custom_plan", "force_generic_plan"} {
		if _, err := conn.Exec(ctx, "SET plan_cache_mode = "+mode); err != nil {
			t.Fatal(err)
		}
		for _, after := range []struct {
			id string
			v  int64
		}{{"", 0}, {"p-012345", 1}} {
			var plan []struct {
				Plan struct {
					SharedHit  int64 `json:"Shared Hit Blocks"`
					SharedRead int64 `json:"Shared Read Blocks"`
				} `json:"Plan"`
			}
			var raw []byte
			if err := conn.QueryRow(ctx, "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) "+eventsOfSQL,
				"product", after.id, after.v, 2000, ids).Scan(&raw); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(raw, &plan); err != nil || len(plan) != 1 {
				t.Fatalf("plan %s: %v", raw, err)
			}
			// Three aggregates: a few index pages each, two heap pages
			// each. The whole type is hundreds of pages.
			if pages := plan[0].Plan.SharedHit + plan[0].Plan.SharedRead; pages > 60 {
				t.Errorf("%s, after %q/%d: the query read %d pages for 3 aggregates of %d; plan:\n%s",
					mode, after.id, after.v, pages, aggregates, raw)
			}
		}
	}
}
