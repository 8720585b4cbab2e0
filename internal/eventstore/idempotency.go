package eventstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// replay answers a request whose idempotency key exists: the stored
// response if the request is the same, ErrIdempotencyMismatch otherwise.
func (s *Store) replay(ctx context.Context, conn *pgx.Conn, idem *Idempotency) (Result, error) {
	var hash, body []byte
	var status int
	err := conn.QueryRow(ctx, readKeySQL, idem.Principal, idem.Key).Scan(&hash, &status, &body)
	if errors.Is(err, pgx.ErrNoRows) {
		if _, err := conn.Exec(ctx, "ROLLBACK"); err != nil {
			return Result{}, fmt.Errorf("rolling back: %w", err)
		}
		return Result{}, errKeyVanished
	}
	if err != nil {
		return Result{}, fmt.Errorf("reading idempotency key: %w", err)
	}
	if _, err := conn.Exec(ctx, "ROLLBACK"); err != nil {
		return Result{}, fmt.Errorf("rolling back: %w", err)
	}
	if !bytes.Equal(hash, idem.RequestHash) {
		return Result{}, ErrIdempotencyMismatch
	}
	return Result{Replayed: true, Status: status, Body: body}, nil
}

// PurgeIdempotencyKeys deletes idempotency keys stored more than ttl ago
// and returns how many it deleted. A retry after that appends again.
func (s *Store) PurgeIdempotencyKeys(ctx context.Context, ttl time.Duration) (int64, error) {
	ct, err := s.pool.Exec(ctx, `DELETE FROM idempotency_keys WHERE created_at < clock_timestamp() - $1::interval`,
		fmt.Sprintf("%d microseconds", ttl.Microseconds()))
	if err != nil {
		return 0, fmt.Errorf("purging idempotency keys: %w", err)
	}
	return ct.RowsAffected(), nil
}

// PurgeLoop calls PurgeIdempotencyKeys every interval until ctx ends,
// reporting each outcome to report (count, error).
func (s *Store) PurgeLoop(ctx context.Context, ttl, interval time.Duration, report func(int64, error)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			n, err := s.PurgeIdempotencyKeys(ctx, ttl)
			if ctx.Err() == nil {
				report(n, err)
			}
		}
	}
}
