package projector

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"cqrsflow/internal/envelope"
)

// EventStore is the event store as verification reads it: events in
// (aggregate id, version) order, a page at a time, and what the relay
// holds. pgEventStore reads PostgreSQL; tests of the pipeline use their
// own.
type EventStore interface {
	// Events returns up to limit events after (afterID, afterVersion) in
	// (aggregate id, version) order: of the aggregates ids, or of every
	// aggregate when ids is nil.
	Events(ctx context.Context, ids []string, afterID string, afterVersion int64, limit int) ([]envelope.Row, error)
	// RelayHeld returns, per aggregate of ids, the versions the relay
	// holds as dead letters or discarded (never published).
	RelayHeld(ctx context.Context, ids []string) (map[string][]heldVersion, error)
	// Unpublished returns those of ids with rows still in the outbox.
	Unpublished(ctx context.Context, ids []string) (map[string]bool, error)
	// Existing returns those of ids that have events.
	Existing(ctx context.Context, ids []string) (map[string]bool, error)
	// Sample streams n random aggregate ids (whose latest event was
	// recorded since since, unless zero) to fn in chunks of at most chunk.
	Sample(ctx context.Context, n int, since time.Time, chunk int, fn func([]string) error) error
	// IDs returns up to limit aggregate ids after after, in id order:
	// every aggregate, or those whose latest event was recorded since
	// since (unless zero).
	IDs(ctx context.Context, after string, since time.Time, limit int) ([]string, error)
}

// pgEventStore reads one aggregate type's events from PostgreSQL.
type pgEventStore struct {
	pool          *pgxpool.Pool
	aggregateType string
}

// NewEventStore returns the EventStore of aggregateType's events in the
// database of pool.
func NewEventStore(pool *pgxpool.Pool, aggregateType string) EventStore {
	return &pgEventStore{pool: pool, aggregateType: aggregateType}
}

// The keyset conditions compare the whole unique key (aggregate_type,
// aggregate_id, version) as a row so PostgreSQL walks that index from the
// last row of the previous page: every page costs the same, however deep.
// payload and metadata are read as the text of their jsonb, exactly what
// the outbox copy holds and the relay publishes.
const (
	eventColumns = `aggregate_id, version, global_position, event_id::text, event_type, schema_version,
payload::text, metadata::text, occurred_at, recorded_at`
	eventsAllSQL = `SELECT ` + eventColumns + ` FROM events
WHERE aggregate_type = $1 AND (aggregate_type, aggregate_id, version) > ($1, $2, $3)
ORDER BY aggregate_type, aggregate_id, version LIMIT $4`
	// eventsOfSQL reads the events of the aggregates $5 only: the index
	// is entered at each of them (aggregate_id = ANY), and the keyset
	// condition is a filter on those few rows. Written as the row
	// comparison eventsAllSQL uses, PostgreSQL's plan for the values at
	// hand took the comparison as the index range and filtered the ids
	// along it: every call read every event of the type from the start
	// (the continuous verifier made that call every second).
	eventsOfSQL = `SELECT ` + eventColumns + ` FROM events
WHERE aggregate_type = $1 AND aggregate_id = ANY($5) AND (aggregate_id > $2 OR (aggregate_id = $2 AND version > $3))
ORDER BY aggregate_type, aggregate_id, version LIMIT $4`
	relayHeldSQL = `SELECT aggregate_id, version, 'dead letter (' || reason || ')' FROM outbox_dead_letters
WHERE aggregate_type = $1 AND aggregate_id = ANY($2)
UNION ALL
SELECT aggregate_id, version, 'discarded' FROM outbox_discarded
WHERE aggregate_type = $1 AND aggregate_id = ANY($2)`
	unpublishedSQL = `SELECT DISTINCT aggregate_id FROM outbox WHERE aggregate_type = $1 AND aggregate_id = ANY($2)`
	existingSQL    = `SELECT aggregate_id FROM aggregates WHERE aggregate_type = $1 AND aggregate_id = ANY($2)`
)

func (s *pgEventStore) Events(ctx context.Context, ids []string, afterID string, afterVersion int64, limit int) ([]envelope.Row, error) {
	var rows pgx.Rows
	var err error
	if ids == nil {
		rows, err = s.pool.Query(ctx, eventsAllSQL, s.aggregateType, afterID, afterVersion, limit)
	} else {
		rows, err = s.pool.Query(ctx, eventsOfSQL, s.aggregateType, afterID, afterVersion, limit, ids)
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s events: %w", s.aggregateType, err)
	}
	out := make([]envelope.Row, 0, limit)
	for rows.Next() {
		r := envelope.Row{AggregateType: s.aggregateType}
		var payload, metadata string
		if err := rows.Scan(&r.AggregateID, &r.Version, &r.GlobalPosition, &r.EventID, &r.EventType, &r.SchemaVersion,
			&payload, &metadata, &r.OccurredAt, &r.RecordedAt); err != nil {
			rows.Close()
			return nil, fmt.Errorf("reading %s events: %w", s.aggregateType, err)
		}
		r.Payload, r.Metadata = []byte(payload), []byte(metadata)
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading %s events: %w", s.aggregateType, err)
	}
	return out, nil
}

func (s *pgEventStore) RelayHeld(ctx context.Context, ids []string) (map[string][]heldVersion, error) {
	out := map[string][]heldVersion{}
	rows, err := s.pool.Query(ctx, relayHeldSQL, s.aggregateType, ids)
	if err != nil {
		return nil, fmt.Errorf("reading the relay's dead letters: %w", err)
	}
	var id, what string
	var v int64
	_, err = pgx.ForEachRow(rows, []any{&id, &v, &what}, func() error {
		out[id] = append(out[id], heldVersion{version: v, kind: holdUnapplied, why: "the relay holds it: " + what})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading the relay's dead letters: %w", err)
	}
	return out, nil
}

func (s *pgEventStore) Unpublished(ctx context.Context, ids []string) (map[string]bool, error) {
	return s.idSet(ctx, unpublishedSQL, ids, "reading the outbox")
}

func (s *pgEventStore) Existing(ctx context.Context, ids []string) (map[string]bool, error) {
	return s.idSet(ctx, existingSQL, ids, "reading aggregates")
}

func (s *pgEventStore) idSet(ctx context.Context, sql string, ids []string, what string) (map[string]bool, error) {
	out := map[string]bool{}
	if len(ids) == 0 {
		return out, nil
	}
	rows, err := s.pool.Query(ctx, sql, s.aggregateType, ids)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	var id string
	if _, err := pgx.ForEachRow(rows, []any{&id}, func() error { out[id] = true; return nil }); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return out, nil
}

// The selections of `projector verify`: aggregate ids streamed from
// PostgreSQL in pages (the events of each page are then read by Events).
const (
	// sampleSQL picks n aggregates at random: PostgreSQL keeps only the n
	// best of a random order (a top-n heap), never the whole table.
	sampleSQL = `SELECT aggregate_id FROM aggregates WHERE aggregate_type = $1 ORDER BY random() LIMIT $2`
	// sinceSQL pages through the aggregates whose latest event was
	// recorded at or after $2 (one index lookup of the latest event per
	// aggregate; appends are serialized per aggregate, so the latest
	// version is also the latest recorded).
	sinceSQL = `SELECT a.aggregate_id FROM aggregates a
JOIN events e ON e.aggregate_type = a.aggregate_type AND e.aggregate_id = a.aggregate_id AND e.version = a.version
WHERE a.aggregate_type = $1 AND e.recorded_at >= $2 AND (a.aggregate_type, a.aggregate_id) > ($1, $3)
ORDER BY a.aggregate_type, a.aggregate_id LIMIT $4`
	sampleSinceSQL = `SELECT a.aggregate_id FROM aggregates a
JOIN events e ON e.aggregate_type = a.aggregate_type AND e.aggregate_id = a.aggregate_id AND e.version = a.version
WHERE a.aggregate_type = $1 AND e.recorded_at >= $3 ORDER BY random() LIMIT $2`
	// walkSQL pages through every aggregate in id order (the continuous
	// verifier's walk).
	walkSQL = `SELECT aggregate_id FROM aggregates WHERE aggregate_type = $1 AND (aggregate_type, aggregate_id) > ($1, $2)
ORDER BY aggregate_type, aggregate_id LIMIT $3`
)

func (s *pgEventStore) Sample(ctx context.Context, n int, since time.Time, chunk int, fn func([]string) error) error {
	var rows pgx.Rows
	var err error
	if since.IsZero() {
		rows, err = s.pool.Query(ctx, sampleSQL, s.aggregateType, n)
	} else {
		rows, err = s.pool.Query(ctx, sampleSinceSQL, s.aggregateType, n, since)
	}
	if err != nil {
		return fmt.Errorf("sampling aggregates: %w", err)
	}
	defer rows.Close()
	ids := make([]string, 0, chunk)
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return fmt.Errorf("sampling aggregates: %w", err)
		}
		if ids = append(ids, id); len(ids) == chunk {
			if err := fn(ids); err != nil {
				return err
			}
			ids = ids[:0]
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("sampling aggregates: %w", err)
	}
	if len(ids) > 0 {
		return fn(ids)
	}
	return nil
}

func (s *pgEventStore) IDs(ctx context.Context, after string, since time.Time, limit int) ([]string, error) {
	var rows pgx.Rows
	var err error
	if since.IsZero() {
		rows, err = s.pool.Query(ctx, walkSQL, s.aggregateType, after, limit)
	} else {
		rows, err = s.pool.Query(ctx, sinceSQL, s.aggregateType, since, after, limit)
	}
	if err != nil {
		return nil, fmt.Errorf("listing aggregates: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("listing aggregates: %w", err)
	}
	return ids, nil
}
