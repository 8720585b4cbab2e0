//go:build integration

package migrations_test

import (
	"context"
	"testing"

	"cqrsflow/internal/migrations"
	"cqrsflow/internal/outbox"
	"cqrsflow/internal/testenv"
)

func TestUpCreatesSchemaAndIsIdempotent(t *testing.T) {
	pg := testenv.Postgres(t)
	ctx := context.Background()
	// Second run is a no-op, not an error.
	if err := migrations.Up(ctx, pg.URL); err != nil {
		t.Fatalf("second Up: %v", err)
	}
	v, dirty, err := migrations.Version(pg.URL)
	if err != nil || dirty || v < 1 {
		t.Fatalf("version = %d dirty=%v err=%v; want >=1, clean", v, dirty, err)
	}
	var n int
	if err := pg.Pool.QueryRow(ctx, `SELECT count(*) FROM relay_leases`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != outbox.ShardCount {
		t.Fatalf("relay_leases rows = %d, want %d", n, outbox.ShardCount)
	}
	// The shard generated column puts one aggregate's rows in one shard.
	var s1, s2 int
	err = pg.Pool.QueryRow(ctx, `SELECT `+outbox.ShardSQL("'abc'")+`::int, `+outbox.ShardSQL("'abc'")+`::int`).Scan(&s1, &s2)
	if err != nil || s1 != s2 || s1 < 0 || s1 >= outbox.ShardCount {
		t.Fatalf("shard = %d,%d err=%v", s1, s2, err)
	}
	// The table lives in the private schema, not public.
	var schema string
	if err := pg.Pool.QueryRow(ctx, `SELECT table_schema FROM information_schema.tables WHERE table_name='events' AND table_schema=$1`, pg.Schema).Scan(&schema); err != nil {
		t.Fatalf("events table not in schema %s: %v", pg.Schema, err)
	}
}

// Outbox rows written before 0020 (a backlog at upgrade time) get their
// copy of the event from events; going back down restores the foreign key.
func TestOutboxEventCopyMigrationFillsTheBacklog(t *testing.T) {
	pg := testenv.Postgres(t)
	ctx := context.Background()
	if err := migrations.To(pg.URL, 10); err != nil {
		t.Fatal(err)
	}
	_, err := pg.Pool.Exec(ctx, `INSERT INTO events (event_id, aggregate_type, aggregate_id, version, event_type, schema_version, payload, metadata, occurred_at)
		SELECT gen_random_uuid(), 'product', 'p-' || g, 1, 'ProductCreated', 1, jsonb_build_object('name', 'n' || g, 'price', 1.5), '{"request_id":"r"}', clock_timestamp()
		FROM generate_series(1, 3) g`)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pg.Pool.Exec(ctx, `INSERT INTO outbox (aggregate_type, aggregate_id, global_position)
		SELECT aggregate_type, aggregate_id, global_position FROM events`); err != nil {
		t.Fatalf("old-shape outbox insert: %v", err)
	}
	if err := migrations.Up(ctx, pg.URL); err != nil {
		t.Fatalf("up over a backlog: %v", err)
	}
	var n, same int
	err = pg.Pool.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE o.event_id = e.event_id AND o.event_type = e.event_type
			AND o.schema_version = e.schema_version AND o.version = e.version AND o.payload::jsonb = e.payload
			AND o.metadata::jsonb = e.metadata AND o.occurred_at = e.occurred_at AND o.recorded_at = e.recorded_at)
		FROM outbox o JOIN events e USING (global_position)`).Scan(&n, &same)
	if err != nil || n != 3 || same != 3 {
		t.Fatalf("after up: %d rows, %d equal to their event (err %v); want 3, 3", n, same, err)
	}
	if _, err := pg.Pool.Exec(ctx, `INSERT INTO outbox (aggregate_type, aggregate_id, global_position) VALUES ('product', 'x', 1)`); err == nil {
		t.Fatal("an outbox row without its event copy was accepted")
	}
	if err := migrations.To(pg.URL, 10); err != nil {
		t.Fatalf("down with rows: %v", err)
	}
	if _, err := pg.Pool.Exec(ctx, `INSERT INTO outbox (aggregate_type, aggregate_id, global_position) VALUES ('product', 'x', 999999)`); err == nil {
		t.Fatal("after down: an outbox row for a missing event was accepted (foreign key not restored)")
	}
	if err := migrations.Up(ctx, pg.URL); err != nil {
		t.Fatal(err)
	}
}
