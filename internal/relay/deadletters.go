package relay

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"cqrsflow/internal/outbox"
)

// DeadLetter is one row of outbox_dead_letters: an outbox row Kafka
// refused on every attempt (or whose envelope cannot be built), moved out
// of the outbox by the relay. The later outbox rows of its aggregate are
// held until it is retried or discarded.
type DeadLetter struct {
	ID             int64     `json:"id"` // the row's outbox id, which a retry puts it back under
	Shard          int16     `json:"shard"`
	AggregateType  string    `json:"aggregate_type"`
	AggregateID    string    `json:"aggregate_id"`
	Version        int64     `json:"version"`
	EventID        string    `json:"event_id"`
	EventType      string    `json:"event_type"`
	GlobalPosition int64     `json:"global_position"`
	PayloadBytes   int       `json:"payload_bytes"`
	Reason         string    `json:"reason"` // a Kafka error name, "envelope" or "other"
	Error          string    `json:"error"`
	Attempts       int       `json:"attempts"`
	FirstFailedAt  time.Time `json:"first_failed_at"`
	LastFailedAt   time.Time `json:"last_failed_at"`
	DeadLetteredAt time.Time `json:"dead_lettered_at"`
	RelayID        string    `json:"relay_id"`
	Held           int64     `json:"held"` // outbox rows of the aggregate waiting behind it
}

// Selection names dead letters: by id, by aggregate (AggregateID, of
// any type unless AggregateType is set), or All (of AggregateType if
// set). The zero Selection names nothing.
type Selection struct {
	IDs           []int64
	AggregateType string
	AggregateID   string
	All           bool
}

// ErrNoDeadLetter is returned when a selection names a dead letter that
// does not exist (nothing was changed).
var ErrNoDeadLetter = errors.New("no such dead letter")

// DB is what the dead-letter commands need (a *pgxpool.Pool or a *pgx.Conn).
type DB interface {
	Begin(ctx context.Context) (pgx.Tx, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// listSQL selects dead letters ($1 ids, $2 aggregate id, $3 aggregate
// type: each empty = any) with the number of rows held behind each.
const listSQL = `SELECT d.id, d.shard, d.aggregate_type, d.aggregate_id, d.version, d.event_id::text, d.event_type,
		d.global_position, octet_length(d.payload), d.reason, d.error, d.attempts, d.first_failed_at, d.last_failed_at,
		d.dead_lettered_at, d.relay_id,
		(SELECT count(*) FROM outbox o WHERE o.shard = d.shard AND o.aggregate_id = d.aggregate_id
			AND o.aggregate_type = d.aggregate_type AND o.id > d.id)
	FROM outbox_dead_letters d
	WHERE (cardinality($1::bigint[]) = 0 OR d.id = ANY($1::bigint[]))
		AND ($2::text = '' OR d.aggregate_id = $2::text) AND ($3::text = '' OR d.aggregate_type = $3::text)
	ORDER BY d.id`

// ListDeadLetters returns the dead letters sel names (every one for the
// zero Selection), in id order, at most limit (0: no limit).
func ListDeadLetters(ctx context.Context, db DB, sel Selection, limit int) ([]DeadLetter, error) {
	q := listSQL
	if limit > 0 {
		q += fmt.Sprintf(" LIMIT %d", limit)
	}
	return queryDeadLetters(ctx, db, q, sel)
}

func queryDeadLetters(ctx context.Context, db interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}, q string, sel Selection) ([]DeadLetter, error) {
	ids := sel.IDs
	if ids == nil {
		ids = []int64{}
	}
	rows, err := db.Query(ctx, q, ids, sel.AggregateID, sel.AggregateType)
	if err != nil {
		return nil, dlErr("listing dead letters", err)
	}
	var out []DeadLetter
	var d DeadLetter
	_, err = pgx.ForEachRow(rows, []any{&d.ID, &d.Shard, &d.AggregateType, &d.AggregateID, &d.Version, &d.EventID, &d.EventType,
		&d.GlobalPosition, &d.PayloadBytes, &d.Reason, &d.Error, &d.Attempts, &d.FirstFailedAt, &d.LastFailedAt,
		&d.DeadLetteredAt, &d.RelayID, &d.Held}, func() error {
		out = append(out, d)
		return nil
	})
	if err != nil {
		return nil, dlErr("listing dead letters", err)
	}
	return out, nil
}

// dlErr wraps err, pointing at the migrations when the table is missing.
func dlErr(what string, err error) error {
	if pe, ok := errors.AsType[*pgconn.PgError](err); ok && pe.Code == "42P01" {
		return fmt.Errorf("%s: %w (apply the migrations: `api migrate`, or start outbox-relay with MIGRATE=true)", what, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// lockSelected locks and returns the dead letters sel names, or
// ErrNoDeadLetter when an id names none, or an aggregate has none.
func lockSelected(ctx context.Context, tx pgx.Tx, sel Selection) ([]DeadLetter, error) {
	if len(sel.IDs) == 0 && sel.AggregateID == "" && !sel.All {
		return nil, errors.New("selection names no dead letter: give ids, an aggregate, or all")
	}
	got, err := queryDeadLetters(ctx, tx, listSQL+" FOR UPDATE OF d", sel)
	if err != nil {
		return nil, err
	}
	var missing []int64
	for _, id := range sel.IDs {
		if !slices.ContainsFunc(got, func(d DeadLetter) bool { return d.ID == id }) {
			missing = append(missing, id)
		}
	}
	switch {
	case len(missing) > 0:
		return nil, fmt.Errorf("%w with id %v (see `outbox-relay dead list`)", ErrNoDeadLetter, missing)
	case sel.AggregateID != "" && len(got) == 0:
		return nil, fmt.Errorf("%w for aggregate %q", ErrNoDeadLetter, sel.AggregateID)
	}
	return got, nil
}

// notifyShards wakes the relays that serve the dead letters' shards.
func notifyShards(ctx context.Context, tx pgx.Tx, dls []DeadLetter) error {
	var shards []int
	for _, d := range dls {
		if !slices.Contains(shards, int(d.Shard)) {
			shards = append(shards, int(d.Shard))
		}
	}
	if len(shards) == 0 {
		return nil
	}
	_, err := tx.Exec(ctx, `SELECT pg_notify($1, $2)`, outbox.NotifyChannel, outbox.NotifyPayload(shards...))
	return err
}

// RetryDeadLetters moves the dead letters sel names back into the outbox
// under their original ids, in one transaction, and returns them (Held:
// the rows that follow each). Their ids are below the rows held behind
// them, so the relay publishes each before its aggregate's held rows. The
// removal bumps the redrive generation (a trigger), so every relay worker
// claims from the start of its shards again, and the shards are
// notified, so they do at once. A row Kafka still refuses comes back
// after the relay's attempts.
func RetryDeadLetters(ctx context.Context, db DB, sel Selection) ([]DeadLetter, error) {
	var out []DeadLetter
	err := pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		var err error
		if out, err = lockSelected(ctx, tx, sel); err != nil || len(out) == 0 {
			return err
		}
		ids := make([]int64, len(out))
		for i, d := range out {
			ids[i] = d.ID
		}
		_, err = tx.Exec(ctx, `WITH moved AS (DELETE FROM outbox_dead_letters WHERE id = ANY($1::bigint[]) RETURNING *)
			INSERT INTO outbox (id, `+outbox.Columns+`, created_at) OVERRIDING SYSTEM VALUE
			SELECT id, aggregate_type, aggregate_id, global_position, event_id, event_type, schema_version, version,
				payload, metadata, occurred_at, recorded_at, created_at
			FROM moved ORDER BY id`, ids)
		if err != nil {
			return dlErr("moving dead letters back to the outbox", err)
		}
		return notifyShards(ctx, tx, out)
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// DiscardDeadLetter drops the dead letter id from publication: it moves
// to outbox_discarded (the audit trail; the event stays in the events
// table) and the rows held behind it are released, as by a retry. It
// returns the dead letter (Held: the rows released).
func DiscardDeadLetter(ctx context.Context, db DB, id int64) (DeadLetter, error) {
	var out []DeadLetter
	err := pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		var err error
		if out, err = lockSelected(ctx, tx, Selection{IDs: []int64{id}}); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `WITH gone AS (DELETE FROM outbox_dead_letters WHERE id = $1 RETURNING *)
			INSERT INTO outbox_discarded SELECT gone.*, clock_timestamp() FROM gone`, id)
		if err != nil {
			return dlErr("discarding the dead letter", err)
		}
		return notifyShards(ctx, tx, out)
	})
	if err != nil {
		return DeadLetter{}, err
	}
	return out[0], nil
}
