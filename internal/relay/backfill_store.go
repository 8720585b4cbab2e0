package relay

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"cqrsflow/internal/obs"
)

// backfillStore holds Backfill's SQL: the events it reads and the
// backfill_progress row of its run.
type backfillStore struct {
	pool *pgxpool.Pool
	run  string
}

// start returns the run's cursor (the global position below which
// everything selected is published) and its record count. A new run, or
// one restarted, starts just below the selection's FromPosition.
func (s *backfillStore) start(ctx context.Context, o BackfillOptions) (cursor, total int64, resumed bool, err error) {
	sel := o.Selection
	initial := max(sel.FromPosition-1, 0)
	var typ, key, topic string
	err = s.pool.QueryRow(ctx, `SELECT aggregate_type, selection, topic, position, published FROM backfill_progress WHERE run = $1`, s.run).
		Scan(&typ, &key, &topic, &cursor, &total)
	switch {
	case errors.Is(err, pgx.ErrNoRows) || (err == nil && o.Restart):
		_, err = s.pool.Exec(ctx, `INSERT INTO backfill_progress (run, aggregate_type, selection, topic, position)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (run) DO UPDATE SET aggregate_type = EXCLUDED.aggregate_type, selection = EXCLUDED.selection,
  topic = EXCLUDED.topic, position = EXCLUDED.position, published = 0,
  started_at = clock_timestamp(), updated_at = clock_timestamp(), finished_at = NULL`,
			s.run, sel.AggregateType, sel.key(), o.Topic, initial)
		if err != nil {
			return 0, 0, false, fmt.Errorf("recording backfill run %s: %w", s.run, err)
		}
		return initial, 0, false, nil
	case err != nil:
		return 0, 0, false, fmt.Errorf("reading backfill run %s: %w", s.run, err)
	}
	if typ != sel.AggregateType || key != sel.key() || topic != o.Topic {
		return 0, 0, false, fmt.Errorf("%w: run %s publishes %s events (%s) to %s; resume it with the same selection, pick another run name or restart it",
			ErrBackfillMismatch, s.run, typ, key, topic)
	}
	return cursor, total, true, nil
}

// horizon returns the highest global position below which every event
// is committed. Positions are taken at insert and committed in any order,
// so the highest visible one is not enough: an append still in flight
// may commit a lower position later, and a cursor past it would skip
// that event for good. A SHARE lock on events waits until every
// transaction that inserted into it has ended and holds new inserts back
// while the maximum is read, so nothing below it can appear afterwards.
// Appends stall for that moment; lockTimeout bounds the wait (a stuck
// writer fails the backfill with a clear error instead of stalling every
// append behind the lock queue).
func (s *backfillStore) horizon(ctx context.Context, lockTimeout time.Duration) (int64, error) {
	var h int64
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, fmt.Sprintf(`SET LOCAL lock_timeout = %d`, lockTimeout.Milliseconds())); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `LOCK TABLE events IN SHARE MODE`); err != nil {
			return fmt.Errorf("waiting %s for the appends in flight: %w", lockTimeout, err)
		}
		return tx.QueryRow(ctx, `SELECT coalesce(max(global_position), 0) FROM events`).Scan(&h)
	})
	if err != nil {
		return 0, fmt.Errorf("backfill horizon: %w", err)
	}
	return h, nil
}

// batch reads up to limit selected events in (after, upTo], in
// global-position order. Discarded dead letters are left out, and so are
// a dead letter's event and its aggregate's later ones: the relay holds
// those back until the dead letter is retried, and publishes them then.
func (s *backfillStore) batch(ctx context.Context, sel BackfillSelection, after, upTo int64, limit int) ([]row, error) {
	var ids []string
	if len(sel.AggregateIDs) > 0 {
		ids = sel.AggregateIDs
	}
	var from *time.Time
	if !sel.FromTime.IsZero() {
		from = &sel.FromTime
	}
	rows, err := s.pool.Query(ctx, `SELECT e.global_position, e.event_id::text, e.aggregate_type, e.aggregate_id, e.version,
  e.event_type, e.schema_version, e.payload::text, e.metadata::text, e.occurred_at, e.recorded_at
FROM events e
WHERE e.aggregate_type = $1 AND e.global_position > $2 AND e.global_position <= $3
  AND ($4::text[] IS NULL OR e.aggregate_id = ANY($4::text[]))
  AND ($5::timestamptz IS NULL OR e.recorded_at >= $5)
  AND NOT EXISTS (SELECT 1 FROM outbox_discarded x WHERE x.event_id = e.event_id)
  AND NOT EXISTS (SELECT 1 FROM outbox_dead_letters d
    WHERE d.aggregate_id = e.aggregate_id AND d.aggregate_type = e.aggregate_type AND d.version <= e.version)
ORDER BY e.global_position
LIMIT $6`, sel.AggregateType, after, upTo, ids, from, limit)
	if err != nil {
		return nil, fmt.Errorf("reading events above %d: %w", after, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (row, error) {
		var w row
		var payload, meta string
		err := r.Scan(&w.GlobalPosition, &w.EventID, &w.AggregateType, &w.AggregateID, &w.Version,
			&w.EventType, &w.SchemaVersion, &payload, &meta, &w.OccurredAt, &w.RecordedAt)
		w.Payload, w.Metadata = []byte(payload), []byte(meta)
		return w, err
	})
	if err != nil {
		return nil, fmt.Errorf("reading events above %d: %w", after, err)
	}
	return out, nil
}

// advance records that everything selected up to position is acknowledged.
func (s *backfillStore) advance(ctx context.Context, position, published int64) error {
	_, err := s.pool.Exec(ctx, `UPDATE backfill_progress SET position = $2, published = published + $3, updated_at = clock_timestamp()
WHERE run = $1`, s.run, position, published)
	if err != nil {
		return fmt.Errorf("recording backfill progress at %d: %w", position, err)
	}
	return nil
}

func (s *backfillStore) finish(ctx context.Context) error {
	_, err := s.pool.Exec(ctx, `UPDATE backfill_progress SET finished_at = clock_timestamp(), updated_at = clock_timestamp() WHERE run = $1`, s.run)
	if err != nil {
		return fmt.Errorf("recording the end of backfill run %s: %w", s.run, err)
	}
	return nil
}

// BackfillMetrics are the backfill's metrics (docs/architecture.md).
type BackfillMetrics struct {
	published *prometheus.CounterVec
	position  prometheus.Gauge
	target    prometheus.Gauge
}

// NewBackfillMetrics registers the backfill's metrics with reg.
func NewBackfillMetrics(reg prometheus.Registerer) *BackfillMetrics {
	m := &BackfillMetrics{
		published: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: obs.Namespace, Name: "backfill_published_total",
			Help: "Records a backfill republished and Kafka acknowledged, by topic.",
		}, []string{"topic"}),
		position: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: obs.Namespace, Name: "backfill_position",
			Help: "Global position up to which the running backfill has published every selected event.",
		}),
		target: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: obs.Namespace, Name: "backfill_target_position",
			Help: "Global position the running backfill publishes up to (the events committed when it started).",
		}),
	}
	reg.MustRegister(m.published, m.position, m.target)
	return m
}
