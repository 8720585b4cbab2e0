package eventstore

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"
)

// ErrSnapshotInvalid is what Command.DecideFrom returns (wrapped) when the
// snapshot it was handed does not decode or does not hold up (a version
// that is not the snapshot's, a broken invariant): the store then hands
// it the whole history instead, and writes the state it returns as the
// new snapshot. The store itself returns it when a snapshot does not fit
// the aggregate's head (ahead of it, or followed by a hole).
var ErrSnapshotInvalid = errors.New("snapshot invalid")

// Snapshot is an aggregate's state as of one version, as the caller's
// fold encoded it. The store keeps one per aggregate (aggregate_snapshots)
// and never looks inside State.
type Snapshot struct {
	Version       int64 // the aggregate version State is at
	SchemaVersion int   // the version of State's encoding and of the fold that made it
	State         json.RawMessage
}

// Decision is what Command.DecideFrom decided: the events to append and
// the aggregate's state after them, which the store writes as the
// aggregate's snapshot in the same transaction (nil State: none is
// written and the previous snapshot stays, still correct, only older).
type Decision struct {
	Events []NewEvent
	State  json.RawMessage
}

// The snapshot statements. A snapshot is read, and the events after it,
// only once the head row is locked: every writer of a snapshot holds that
// lock, so the snapshot and the events read agree with the head version.
const (
	loadSnapshotSQL = `SELECT version, state FROM aggregate_snapshots
WHERE aggregate_type = $1 AND aggregate_id = $2 AND schema_version = $3`
	// loadTailSQL reads the events after the snapshot of schema version
	// $3 (all of them without one): a range scan of the events' unique
	// (aggregate_type, aggregate_id, version) index, however long the
	// history before it.
	loadTailSQL = `SELECT version, event_type, schema_version, payload FROM events
WHERE aggregate_type = $1 AND aggregate_id = $2 AND version > COALESCE((SELECT s.version FROM aggregate_snapshots s
  WHERE s.aggregate_type = $1 AND s.aggregate_id = $2 AND s.schema_version = $3), 0)
ORDER BY version`
	upsertSnapshotSQL = `INSERT INTO aggregate_snapshots (aggregate_type, aggregate_id, version, schema_version, state)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (aggregate_type, aggregate_id) DO UPDATE
SET version = excluded.version, schema_version = excluded.schema_version, state = excluded.state, updated_at = clock_timestamp()`

	// The batch forms: one statement for every aggregate of a batch.
	// Schema version 0 matches no snapshot, so loadTailsSQL reads the
	// whole history of an aggregate folded without one.
	loadSnapshotsSQL = `SELECT s.aggregate_type, s.aggregate_id, s.version, s.state
FROM aggregate_snapshots s JOIN unnest($1::text[], $2::text[], $3::int[]) AS x(t, i, sv)
  ON s.aggregate_type = x.t AND s.aggregate_id = x.i AND s.schema_version = x.sv`
	loadTailsSQL = `SELECT e.aggregate_type, e.aggregate_id, e.version, e.event_type, e.schema_version, e.payload
FROM unnest($1::text[], $2::text[], $3::int[]) AS x(t, i, sv)
JOIN events e ON e.aggregate_type = x.t AND e.aggregate_id = x.i
  AND e.version > COALESCE((SELECT s.version FROM aggregate_snapshots s
    WHERE s.aggregate_type = x.t AND s.aggregate_id = x.i AND s.schema_version = x.sv), 0)
ORDER BY e.aggregate_type, e.aggregate_id, e.version`
	upsertSnapshotsSQL = `INSERT INTO aggregate_snapshots (aggregate_type, aggregate_id, version, schema_version, state)
SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::int[], $5::jsonb[])
ON CONFLICT (aggregate_type, aggregate_id) DO UPDATE
SET version = excluded.version, schema_version = excluded.schema_version, state = excluded.state, updated_at = clock_timestamp()`
)

// decideFrom runs cmd.DecideFrom on what was loaded for an aggregate at
// version current, after checking that it adds up to exactly that: the
// snapshot's version, then every version after it up to current. A
// snapshot ahead of the head, or a hole after it, would make the command
// decide on a state that is not the aggregate's.
func decideFrom(cmd Command, current int64, snap *Snapshot, events []Event) (Decision, error) {
	var base int64
	if snap != nil {
		base = snap.Version
	}
	if int64(len(events)) != current-base || (len(events) > 0 && events[0].Version != base+1) {
		err := fmt.Errorf("loading %s %s: a snapshot at v%d and %d events after it do not make v%d",
			cmd.AggregateType, cmd.AggregateID, base, len(events), current)
		if snap != nil {
			err = fmt.Errorf("%w: %w", ErrSnapshotInvalid, err)
		}
		return Decision{}, err
	}
	return cmd.DecideFrom(snap, events)
}

// stateVersions sets the StateVersion each aggregate of a batch is loaded
// with: the one its DecideFrom commands share, or 0 (the whole history)
// when one of its commands folds with Decide or their versions differ.
func (tx *batchTx) stateVersions() {
	full := map[aggKey]bool{}
	for _, c := range tx.cmds {
		cmd := c.p.cmd
		k := aggKey{cmd.AggregateType, cmd.AggregateID}
		a := tx.aggs[k]
		switch {
		case cmd.DecideFrom != nil && (a.sv == 0 || a.sv == cmd.StateVersion):
			a.sv = cmd.StateVersion
		case cmd.DecideFrom != nil || cmd.Decide != nil:
			full[k] = true
		}
	}
	for k := range full {
		tx.aggs[k].sv = 0
	}
}

// queueLoadSnapshots reads the snapshots of the aggregates loaded with a
// StateVersion (hsv > 0), after their head rows were locked.
func (tx *batchTx) queueLoadSnapshots(ht, hi []string, hsv []int32) {
	if !slices.ContainsFunc(hsv, func(v int32) bool { return v > 0 }) {
		return
	}
	tx.b.Queue(loadSnapshotsSQL, ht, hi, hsv).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			var k aggKey
			var s Snapshot
			var state []byte
			if err := rows.Scan(&k.typ, &k.id, &s.Version, &state); err != nil {
				return err
			}
			if a := tx.aggs[k]; a != nil && a.sv > 0 {
				s.SchemaVersion, s.State = a.sv, state
				a.snap = &s
			}
		}
		return rows.Err()
	})
}

// keepState records the state a DecideFrom command left its aggregate in
// (its events are already in a.history): it is the snapshot the batch
// stores, and, when the aggregate is folded from snapshots, the one the
// next command on it in the batch starts from.
func (tx *batchTx) keepState(cmd Command, a *aggState, events []NewEvent, state json.RawMessage) {
	if cmd.DecideFrom == nil || state == nil {
		return
	}
	if len(events) == 0 && (a.snap != nil || a.current == 0) {
		return
	}
	a.write = &Snapshot{Version: a.current, SchemaVersion: cmd.StateVersion, State: state}
	if a.sv > 0 {
		a.snap, a.history = a.write, nil
	}
}

// queueSnapshots queues the upsert of every snapshot the batch's
// commands left.
func (tx *batchTx) queueSnapshots() {
	var t, i []string
	var v []int64
	var sv []int32
	var st []string
	for _, k := range tx.keys {
		if w := tx.aggs[k].write; w != nil {
			t, i, v = append(t, k.typ), append(i, k.id), append(v, w.Version)
			sv, st = append(sv, int32(w.SchemaVersion)), append(st, string(w.State))
		}
	}
	if len(t) > 0 {
		tx.b.Queue(upsertSnapshotsSQL, t, i, v, sv, st)
	}
}
