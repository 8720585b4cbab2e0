package eventstore

import (
	"encoding/json"
	"fmt"
)

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
		return Decision{}, fmt.Errorf("loading %s %s: a snapshot at v%d and %d events after it do not make v%d",
			cmd.AggregateType, cmd.AggregateID, base, len(events), current)
	}
	return cmd.DecideFrom(snap, events)
}
