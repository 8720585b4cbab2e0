// Package migrations applies the SQL migrations embedded in schemas/ with
// golang-migrate. The database URL may carry a search_path parameter, so a
// test can migrate a private schema.
package migrations

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/golang-migrate/migrate/v4"
	_ "github.com/golang-migrate/migrate/v4/database/pgx/v5" // pgx5:// driver
	"github.com/golang-migrate/migrate/v4/source/iofs"

	"cqrsflow/schemas"
)

// Up applies every pending migration to the database at databaseURL
// (postgres:// or postgresql://). It is safe to call concurrently from
// several processes: golang-migrate takes an advisory lock.
func Up(ctx context.Context, databaseURL string) error {
	m, err := open(databaseURL)
	if err != nil {
		return err
	}
	defer m.Close()
	done := make(chan error, 1)
	go func() { done <- m.Up() }()
	select {
	case err = <-done:
	case <-ctx.Done():
		m.GracefulStop <- true
		err = <-done
		if err == nil {
			err = ctx.Err()
		}
	}
	if err != nil && !errors.Is(err, migrate.ErrNoChange) {
		return fmt.Errorf("applying migrations: %w", err)
	}
	return nil
}

// To migrates the database up or down to version (operators roll back
// with it; tests check a migration against rows written before it).
func To(databaseURL string, version uint) error {
	m, err := open(databaseURL)
	if err != nil {
		return err
	}
	defer m.Close()
	if err := m.Migrate(version); err != nil && !errors.Is(err, migrate.ErrNoChange) {
		return fmt.Errorf("migrating to version %d: %w", version, err)
	}
	return nil
}

// Version returns the current migration version and whether it is dirty.
func Version(databaseURL string) (uint, bool, error) {
	m, err := open(databaseURL)
	if err != nil {
		return 0, false, err
	}
	defer m.Close()
	v, dirty, err := m.Version()
	if errors.Is(err, migrate.ErrNilVersion) {
		return 0, false, nil
	}
	return v, dirty, err
}

func open(databaseURL string) (*migrate.Migrate, error) {
	src, err := iofs.New(schemas.Migrations, "migrations")
	if err != nil {
		return nil, fmt.Errorf("opening embedded migrations: %w", err)
	}
	m, err := migrate.NewWithSourceInstance("iofs", src, driverURL(databaseURL))
	if err != nil {
		return nil, fmt.Errorf("connecting for migrations: %w", err)
	}
	return m, nil
}

// driverURL rewrites postgres:// to the pgx5:// scheme golang-migrate's
// pgx/v5 driver registers.
func driverURL(u string) string {
	for _, p := range []string{"postgres://", "postgresql://"} {
		if strings.HasPrefix(u, p) {
			return "pgx5://" + strings.TrimPrefix(u, p)
		}
	}
	return u
}
