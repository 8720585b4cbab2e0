//go:build integration

package migrations_test

import (
	"context"
	"testing"

	"cqrsflow/internal/migrations"
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
	if n != 64 {
		t.Fatalf("relay_leases rows = %d, want 64", n)
	}
	// The shard generated column puts one aggregate's rows in one shard.
	var s1, s2 int
	err = pg.Pool.QueryRow(ctx, `SELECT (hashtextextended('abc',0) & 63)::int, (hashtextextended('abc',0) & 63)::int`).Scan(&s1, &s2)
	if err != nil || s1 != s2 || s1 < 0 || s1 > 63 {
		t.Fatalf("shard = %d,%d err=%v", s1, s2, err)
	}
	// The table lives in the private schema, not public.
	var schema string
	if err := pg.Pool.QueryRow(ctx, `SELECT table_schema FROM information_schema.tables WHERE table_name='events' AND table_schema=$1`, pg.Schema).Scan(&schema); err != nil {
		t.Fatalf("events table not in schema %s: %v", pg.Schema, err)
	}
}
