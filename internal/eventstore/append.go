package eventstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// appendTx is one attempt of Execute on one connection: the statements
// queued for the next round trip and what the previous ones returned.
type appendTx struct {
	conn *pgx.Conn
	cmd  Command
	b    *pgx.Batch
	// upsert: AnyVersion without a fold; the head row upsert both locks
	// and advances the version, so nothing has to be read first.
	upsert  bool
	claimed bool  // the idempotency key was free (true without a key)
	current int64 // the head version; -1 until the head row is locked
	history []Event
	shard   int // outbox shard of the appended rows; -1 when none
	res     Result
}

func (s *Store) execute(ctx context.Context, conn *pgx.Conn, cmd Command) (Result, error) {
	tx := &appendTx{conn: conn, cmd: cmd, b: &pgx.Batch{}, claimed: true, current: -1, shard: -1,
		upsert: cmd.Decide == nil && cmd.ExpectedVersion == AnyVersion}
	if tx.queueLock() {
		if err := tx.send(ctx, "locking"); err != nil {
			return Result{}, err
		}
		if !tx.claimed {
			return s.replay(ctx, conn, cmd.Idempotency)
		}
		if err := tx.checkVersion(); err != nil {
			return Result{}, err
		}
	}
	events := cmd.Events
	if cmd.Decide != nil {
		var err error
		if events, err = cmd.Decide(tx.history); err != nil {
			return Result{}, err
		}
	}
	if err := tx.queueAppend(events); err != nil {
		return Result{}, err
	}
	if s.afterInsert != nil {
		if err := tx.send(ctx, "appending to"); err != nil {
			return Result{}, err
		}
		if err := s.afterInsert(ctx); err != nil {
			return Result{}, err
		}
	}
	if err := tx.commit(ctx, len(events)); err != nil {
		return Result{}, err
	}
	if tx.shard >= 0 {
		s.notifier.add(tx.shard)
	}
	return tx.res, nil
}

// send runs the queued statements in one round trip and starts a new batch.
func (tx *appendTx) send(ctx context.Context, doing string) error {
	err := tx.conn.SendBatch(ctx, tx.b).Close()
	tx.b = &pgx.Batch{}
	if err != nil {
		return fmt.Errorf("%s %s %s: %w", doing, tx.cmd.AggregateType, tx.cmd.AggregateID, err)
	}
	return nil
}

// queueLock queues BEGIN, the idempotency claim and the head row lock
// (with the history when the command folds it). It reports whether they
// must run before the decision: a create whose events are known without a
// fold and without a key needs no first step, everything goes in one
// batch, its INSERT of the head row being the lock.
func (tx *appendTx) queueLock() bool {
	cmd := tx.cmd
	typ, id := cmd.AggregateType, cmd.AggregateID
	tx.b.Queue("BEGIN")
	if idem := cmd.Idempotency; idem != nil {
		tx.b.Queue(claimKeySQL, idem.Principal, idem.Key, idem.RequestHash).Exec(func(ct pgconn.CommandTag) error {
			tx.claimed = ct.RowsAffected() == 1
			return nil
		})
	}
	switch {
	case tx.upsert:
		n := int64(len(cmd.Events))
		tx.b.Queue(upsertHeadSQL, typ, id, n).QueryRow(func(row pgx.Row) error {
			var v int64
			if err := row.Scan(&v); err != nil {
				return err
			}
			tx.current = v - n
			return nil
		})
		return true
	case cmd.ExpectedVersion != NoAggregate:
		tx.b.Queue(lockHeadSQL, typ, id).QueryRow(func(row pgx.Row) error {
			err := row.Scan(&tx.current)
			if errors.Is(err, pgx.ErrNoRows) {
				tx.current = 0
				return nil
			}
			return err
		})
		if cmd.Decide != nil {
			tx.b.Queue(loadSQL, typ, id).Query(func(rows pgx.Rows) error {
				var err error
				tx.history, err = scanEvents(rows)
				return err
			})
		}
		return true
	default: // NoAggregate: the INSERT of the head row in queueAppend is the lock.
		tx.current = 0
		return cmd.Idempotency != nil
	}
}

// checkVersion compares the locked head version with the expected one.
func (tx *appendTx) checkVersion() error { return versionError(tx.cmd, tx.current) }

// versionError compares an aggregate's current version (0: none) with
// the one cmd expects.
func versionError(cmd Command, current int64) error {
	if cmd.ExpectedVersion > 0 && current == 0 {
		return ErrNotFound
	}
	if cmd.ExpectedVersion >= 0 && current != cmd.ExpectedVersion {
		return &ConflictError{cmd.AggregateType, cmd.AggregateID, cmd.ExpectedVersion, current}
	}
	return nil
}

// queueAppend queues the head row's advance (unless the upsert did it)
// and the one statement that inserts the events and their outbox rows.
func (tx *appendTx) queueAppend(events []NewEvent) error {
	typ, id := tx.cmd.AggregateType, tx.cmd.AggregateID
	current := tx.current
	n := int64(len(events))
	newVersion := current + n
	if !tx.upsert && n > 0 {
		if current == 0 {
			tx.b.Queue(insertHeadSQL, typ, id, newVersion)
		} else {
			tx.b.Queue(updateHeadSQL, typ, id, newVersion, current).Exec(func(ct pgconn.CommandTag) error {
				if ct.RowsAffected() != 1 {
					return fmt.Errorf("head row of %s %s moved while locked", typ, id)
				}
				return nil
			})
		}
	}
	tx.res = Result{Version: newVersion}
	if n == 0 {
		return nil
	}
	meta, err := json.Marshal(tx.cmd.Metadata)
	if err != nil {
		return fmt.Errorf("encoding metadata: %w", err)
	}
	ids := make([]string, n)
	types := make([]string, n)
	versions := make([]int32, n)
	payloads := make([]string, n)
	for i, e := range events {
		u, err := uuid.NewV7()
		if err != nil {
			return fmt.Errorf("event id: %w", err)
		}
		ids[i], types[i], versions[i], payloads[i] = u.String(), e.Type, int32(e.SchemaVersion), string(e.Payload)
	}
	tx.b.Queue(appendSQL, typ, id, current, ids, types, versions, payloads, string(meta), tx.cmd.OccurredAt).
		Query(func(rows pgx.Rows) error {
			for rows.Next() {
				var a Appended
				if err := rows.Scan(&a.EventID, &a.Type, &a.Version, &a.GlobalPosition, &a.RecordedAt, &tx.shard); err != nil {
					return err
				}
				tx.res.Appended = append(tx.res.Appended, a)
			}
			return rows.Err()
		})
	return nil
}

// commit queues the response stored under the idempotency key and COMMIT,
// and checks that all n events were appended. The response is built
// before the append statement's rows are read, so it sees the new
// version, not the Appended list.
func (tx *appendTx) commit(ctx context.Context, n int) error {
	typ, id := tx.cmd.AggregateType, tx.cmd.AggregateID
	if idem := tx.cmd.Idempotency; idem != nil {
		tx.res.Status, tx.res.Body = idem.Response(tx.res)
		tx.b.Queue(storeKeySQL, idem.Principal, idem.Key, tx.res.Status, tx.res.Body)
	}
	var committed bool
	tx.b.Queue("COMMIT").Exec(func(ct pgconn.CommandTag) error {
		committed = ct.String() == "COMMIT"
		return nil
	})
	if err := tx.send(ctx, "appending to"); err != nil {
		return err
	}
	if !committed {
		return fmt.Errorf("appending to %s %s: transaction rolled back", typ, id)
	}
	if len(tx.res.Appended) != n {
		return fmt.Errorf("appending to %s %s: %d of %d events returned", typ, id, len(tx.res.Appended), n)
	}
	return nil
}
