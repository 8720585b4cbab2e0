//go:build integration

package testenv

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// CreateSchema makes an empty schema the URL points into, Migrate fills
// it, Drop removes it; a second schema of the same name is refused.
func TestCreateMigrateDropSchema(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	name := Name(t)
	s, err := CreateSchema(ctx, PostgresURL(), name)
	if err != nil {
		t.Fatal(err)
	}
	dropped := false
	t.Cleanup(func() {
		if !dropped {
			_ = s.Drop(context.Background())
		}
	})
	if s.Name != name || !strings.Contains(s.URL, "search_path="+name) {
		t.Fatalf("schema = %+v", s)
	}
	if _, err := CreateSchema(ctx, PostgresURL(), name); err == nil || !strings.Contains(err.Error(), "creating schema") {
		t.Errorf("creating %s twice: err = %v", name, err)
	}
	conn, err := pgx.Connect(ctx, s.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	tables := func() int {
		var n int
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM information_schema.tables WHERE table_schema = $1", name).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := tables(); n != 0 {
		t.Errorf("a new schema holds %d tables, want none before Migrate", n)
	}
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	var outbox int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM outbox").Scan(&outbox); err != nil {
		t.Errorf("after Migrate the URL does not reach the schema's outbox: %v", err)
	}
	if err := s.Drop(ctx); err != nil {
		t.Fatal(err)
	}
	dropped = true
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM information_schema.schemata WHERE schema_name = $1)", name).Scan(&exists); err != nil {
		t.Fatal(err)
	}
	if exists {
		t.Errorf("schema %s survived Drop", name)
	}
}

// An unreachable server is reported with its masked URL and the hint.
func TestCreateSchemaUnreachable(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	addr, err := LoopbackAddr()
	if err != nil {
		t.Fatal(err)
	}
	_, err = CreateSchema(ctx, "postgres://u:secret@"+addr+"/db?sslmode=disable&connect_timeout=2", "x")
	if err == nil || !strings.Contains(err.Error(), "make up") || strings.Contains(err.Error(), "secret") {
		t.Errorf("err = %v, want the hint and no password", err)
	}
}
