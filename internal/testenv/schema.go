package testenv

import (
	"context"
	"fmt"
	"net/url"

	"github.com/jackc/pgx/v5"

	"cqrsflow/internal/config"
	"cqrsflow/internal/migrations"
)

// Schema is a private PostgreSQL schema in a shared database. Postgres
// gives a test one; the benchmark harness, which has no testing.T, creates
// and drops its own with CreateSchema and Drop.
type Schema struct {
	Name string
	URL  string // the base URL with search_path set to Name
	base string
}

// CreateSchema creates the schema name in the database at baseURL (empty:
// no migrations yet). The caller drops it with Drop.
func CreateSchema(ctx context.Context, baseURL, name string) (*Schema, error) {
	u, err := WithSearchPath(baseURL, name)
	if err != nil {
		return nil, err
	}
	admin, err := pgx.Connect(ctx, baseURL)
	if err != nil {
		return nil, fmt.Errorf("connecting to PostgreSQL at %s: %w\n%s", config.MaskURL(baseURL), err, hint)
	}
	defer admin.Close(context.Background())
	if _, err := admin.Exec(ctx, "CREATE SCHEMA "+pgx.Identifier{name}.Sanitize()); err != nil {
		return nil, fmt.Errorf("creating schema %s: %w", name, err)
	}
	return &Schema{Name: name, URL: u, base: baseURL}, nil
}

// Migrate applies the migrations into the schema.
func (s *Schema) Migrate(ctx context.Context) error {
	if err := migrations.Up(ctx, s.URL); err != nil {
		return fmt.Errorf("migrating schema %s: %w", s.Name, err)
	}
	return nil
}

// Drop drops the schema and everything in it, on a connection of its own
// (the caller's pools may be closed or broken by then).
func (s *Schema) Drop(ctx context.Context) error {
	conn, err := pgx.Connect(ctx, s.base)
	if err != nil {
		return fmt.Errorf("connecting: %w", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "DROP SCHEMA "+pgx.Identifier{s.Name}.Sanitize()+" CASCADE"); err != nil {
		return fmt.Errorf("dropping schema %s: %w", s.Name, err)
	}
	return nil
}

// WithSearchPath returns databaseURL with search_path set to schema.
func WithSearchPath(databaseURL, schema string) (string, error) {
	return WithParam(databaseURL, "search_path", schema)
}

// WithParam returns databaseURL with the query parameter key set to value
// (search_path, application_name, …).
func WithParam(databaseURL, key, value string) (string, error) {
	u, err := url.Parse(databaseURL)
	if err != nil {
		return "", fmt.Errorf("parsing database url: %w", err)
	}
	q := u.Query()
	q.Set(key, value)
	u.RawQuery = q.Encode()
	return u.String(), nil
}
