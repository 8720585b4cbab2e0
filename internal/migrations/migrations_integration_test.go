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

// 0030: a dead letter keeps its outbox row whole; removing dead letters
// bumps the redrive generation in the same transaction; going down puts
// the dead letters back into the outbox under their ids (nothing lost),
// and up again works.
func TestDeadLettersMigration(t *testing.T) {
	pg := testenv.Postgres(t)
	ctx := context.Background()
	_, err := pg.Pool.Exec(ctx, `INSERT INTO events (event_id, aggregate_type, aggregate_id, version, event_type, schema_version, payload, metadata, occurred_at)
		SELECT gen_random_uuid(), 'product', 'p-1', g, 'ProductUpdated', 1, jsonb_build_object('n', g), '{}', clock_timestamp()
		FROM generate_series(1, 3) g`)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pg.Pool.Exec(ctx, outbox.CopyFromEventsSQL); err != nil {
		t.Fatal(err)
	}
	var deadID int64
	err = pg.Pool.QueryRow(ctx, `WITH gone AS (DELETE FROM outbox WHERE version = 1 RETURNING *)
		INSERT INTO outbox_dead_letters (id, shard, aggregate_type, aggregate_id, global_position, event_id, event_type,
			schema_version, version, payload, metadata, occurred_at, recorded_at, created_at,
			reason, error, attempts, first_failed_at, last_failed_at, relay_id)
		SELECT id, shard, aggregate_type, aggregate_id, global_position, event_id, event_type, schema_version, version,
			payload, metadata, occurred_at, recorded_at, created_at, 'MESSAGE_TOO_LARGE', 'x', 3, now(), now(), 'r'
		FROM gone RETURNING id`).Scan(&deadID)
	if err != nil {
		t.Fatalf("dead-lettering a row: %v", err)
	}
	if _, err := pg.Pool.Exec(ctx, `INSERT INTO outbox_dead_letters (id, shard, aggregate_type, aggregate_id, global_position,
		event_id, event_type, schema_version, version, payload, metadata, occurred_at, recorded_at, created_at, reason, error,
		attempts, first_failed_at, last_failed_at, relay_id)
		SELECT id, shard, aggregate_type, aggregate_id, global_position, event_id, event_type, schema_version, version,
			payload, metadata, occurred_at, recorded_at, created_at, 'x', 'x', 0, now(), now(), 'r' FROM outbox LIMIT 1`); err == nil {
		t.Fatal("a dead letter with 0 attempts was accepted")
	}
	generation := func() int64 {
		t.Helper()
		var g int64
		if err := pg.Pool.QueryRow(ctx, `SELECT generation FROM outbox_redrives`).Scan(&g); err != nil {
			t.Fatal(err)
		}
		return g
	}
	g0 := generation()
	tx, err := pg.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `UPDATE outbox_dead_letters SET error = 'y'`); err != nil {
		t.Fatal(err)
	}
	if generation() != g0 {
		t.Fatal("the generation moved before the removing transaction committed")
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if g1 := generation(); g1 != g0+1 {
		t.Fatalf("generation %d → %d after changing a dead letter, want +1", g0, g1)
	}

	if err := migrations.To(pg.URL, 20); err != nil {
		t.Fatalf("down to 20: %v", err)
	}
	var ids []int64
	if err := pg.Pool.QueryRow(ctx, `SELECT array_agg(id ORDER BY id) FROM outbox`).Scan(&ids); err != nil {
		t.Fatal(err)
	}
	if len(ids) != 3 || ids[0] != deadID {
		t.Fatalf("outbox ids after down: %v, want 3 with the dead letter's %d first", ids, deadID)
	}
	var n int
	if err := pg.Pool.QueryRow(ctx, `SELECT count(*) FROM information_schema.tables WHERE table_schema = $1
		AND table_name IN ('outbox_dead_letters', 'outbox_discarded', 'outbox_redrives')`, pg.Schema).Scan(&n); err != nil || n != 0 {
		t.Fatalf("%d dead-letter tables left after down (%v)", n, err)
	}
	if err := migrations.Up(ctx, pg.URL); err != nil {
		t.Fatalf("up again: %v", err)
	}
	if g := generation(); g != 0 {
		t.Fatalf("generation after up: %d", g)
	}
}
