//go:build integration

package outbox_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgconn"

	"cqrsflow/internal/outbox"
	"cqrsflow/internal/testenv"
)

// aggregateIDs are the ids the shard test hashes: random UUIDs plus ids a
// byte-level hash could treat differently (empty, multi-byte, long,
// quoting characters, lengths around the hash's 12-byte blocks).
func aggregateIDs(n int) []string {
	ids := []string{"", " ", "a", "abc", "ünïcødé", "日本語", "\u2028", `we"ird\id'<&>`, strings.Repeat("x", 10000)}
	for l := 1; l <= 26; l++ {
		ids = append(ids, strings.Repeat("k", l))
	}
	for len(ids) < n {
		ids = append(ids, uuid.NewString())
	}
	return ids
}

// The outbox table's generated shard column (the migrations) and
// ShardSQL (what the event store's append reports to the notifier, and
// so the shard a relay is woken for) agree on every id, and together
// they use every one of the ShardCount shards the leases cover.
func TestShardSQLIsTheOutboxShardColumn(t *testing.T) {
	pg := testenv.Postgres(t)
	ctx := context.Background()
	ids := aggregateIDs(5000)
	_, err := pg.Pool.Exec(ctx, `INSERT INTO events (event_id, aggregate_type, aggregate_id, version, event_type, schema_version, payload, metadata, occurred_at)
		SELECT gen_random_uuid(), 'product', id, 1, 'ProductCreated', 1, jsonb_build_object('n', ord), jsonb_build_object('request_id', 'r' || ord), clock_timestamp()
		FROM unnest($1::text[]) WITH ORDINALITY AS x(id, ord)`, ids)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pg.Pool.Exec(ctx, outbox.CopyFromEventsSQL); err != nil {
		t.Fatalf("copying events to the outbox: %v", err)
	}

	var rows, differ, shards, lo, hi int
	err = pg.Pool.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE shard <> `+outbox.ShardSQL("aggregate_id")+`),
		count(DISTINCT shard), min(shard), max(shard) FROM outbox`).Scan(&rows, &differ, &shards, &lo, &hi)
	if err != nil {
		t.Fatal(err)
	}
	if rows != len(ids) || differ != 0 {
		t.Fatalf("%d outbox rows for %d ids; %d with a shard column other than ShardSQL", rows, len(ids), differ)
	}
	if shards != outbox.ShardCount || lo != 0 || hi != outbox.ShardCount-1 {
		t.Fatalf("shards used: %d in [%d, %d], want all %d", shards, lo, hi, outbox.ShardCount)
	}

	// One lease row per shard, and the table refuses a shard beyond them.
	var leases int
	if err := pg.Pool.QueryRow(ctx, `SELECT count(*) FROM relay_leases WHERE shard >= 0 AND shard < $1`, outbox.ShardCount).Scan(&leases); err != nil {
		t.Fatal(err)
	}
	if leases != outbox.ShardCount {
		t.Fatalf("relay_leases has %d rows for shards 0..%d", leases, outbox.ShardCount-1)
	}
	_, err = pg.Pool.Exec(ctx, `INSERT INTO relay_leases (shard) VALUES ($1)`, outbox.ShardCount)
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "23514" {
		t.Fatalf("inserting lease shard %d: %v, want a check violation", outbox.ShardCount, err)
	}
}

// Columns names every column of the outbox table a writer fills, and
// CopyFromEventsSQL fills each with its event's value.
func TestColumnsAreTheOutboxTable(t *testing.T) {
	pg := testenv.Postgres(t)
	ctx := context.Background()
	var table []string
	err := pg.Pool.QueryRow(ctx, `SELECT array_agg(column_name::text ORDER BY column_name) FROM information_schema.columns
		WHERE table_schema = $1 AND table_name = 'outbox' AND column_name NOT IN ('id', 'shard', 'created_at')`, pg.Schema).Scan(&table)
	if err != nil {
		t.Fatal(err)
	}
	cols := strings.Split(outbox.Columns, ", ")
	slices.Sort(cols)
	if !slices.Equal(cols, table) {
		t.Fatalf("outbox.Columns %v, the table has %v", cols, table)
	}

	_, err = pg.Pool.Exec(ctx, `INSERT INTO events (event_id, aggregate_type, aggregate_id, version, event_type, schema_version, payload, metadata, occurred_at)
		SELECT gen_random_uuid(), 'order', 'o-' || (g % 7), g, 'OrderCreated', 2, jsonb_build_object('quantity', g, 'note', 'ü"'),
			'{"correlation_id":"c"}', clock_timestamp() - interval '1 day'
		FROM generate_series(1, 50) g`)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pg.Pool.Exec(ctx, outbox.CopyFromEventsSQL); err != nil {
		t.Fatal(err)
	}
	var same, n int
	conds := make([]string, 0, len(cols))
	for _, c := range cols {
		conds = append(conds, fmt.Sprintf("o.%[1]s::text = e.%[1]s::text", c))
	}
	err = pg.Pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE `+strings.Join(conds, " AND ")+`), count(*)
		FROM outbox o JOIN events e USING (global_position)`).Scan(&same, &n)
	if err != nil {
		t.Fatal(err)
	}
	if n != 50 || same != n {
		t.Fatalf("%d of %d outbox rows equal their event", same, n)
	}
	// Copied in global_position order: outbox ids ascend with it.
	var inversions int
	err = pg.Pool.QueryRow(ctx, `SELECT count(*) FROM (SELECT id < lag(id) OVER (ORDER BY global_position) AS inv FROM outbox) x WHERE inv`).Scan(&inversions)
	if err != nil || inversions != 0 {
		t.Fatalf("outbox ids out of global_position order: %d (%v)", inversions, err)
	}
}
