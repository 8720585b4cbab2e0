// Package outbox is the contract between the writer of the transactional
// outbox (the event store's append) and its reader (the relay): which
// columns an outbox row carries and how they are filled from an events row,
// how a row's shard is derived, and the notification that tells a relay a
// shard has work.
//
// The table itself is defined by the migrations in schemas/migrations,
// which cannot import Go constants; this package's integration tests check
// that the two agree (shard column, shard count, columns).
package outbox

import (
	"strconv"
	"strings"
)

// NotifyChannel is the LISTEN/NOTIFY channel appends are signalled on
// after commit, with NotifyPayload of the shards that received rows.
const NotifyChannel = "cqrsflow_outbox"

// ShardCount is the number of outbox shards: outbox.shard is in
// [0, ShardCount) and relay_leases has one row per shard. It is a power of
// two because ShardSQL masks the hash with ShardCount-1.
const ShardCount = 64

// ShardSQL returns the SQL expression of the shard of the aggregate id
// given as the SQL expression id: the expression of the outbox table's
// generated shard column. The shard depends on the aggregate id alone, so
// the rows of one aggregate share a shard (and a lease, and a worker),
// which keeps them in order.
//
// The shard is computed by PostgreSQL only, never in Go: hashtextextended
// is PostgreSQL's own hash, and its value depends on the server's byte
// order, so a Go copy could disagree with the generated column.
func ShardSQL(id string) string {
	return "(hashtextextended(" + id + ", 0) & " + strconv.Itoa(ShardCount-1) + ")"
}

// NotifyPayload is the NOTIFY payload naming shards: the shards in
// decimal, separated by commas ("7", "3,17,42"). One notification names
// every shard a writer's round touched, so a listener reads one message
// per round, not one per shard (what a relay's CPU follows is the number
// of rounds that wake it, see eventstore.DefaultNotifyInterval). At most
// ShardCount shards, so a payload stays far below PostgreSQL's 8000-byte
// limit.
func NotifyPayload(shards ...int) string {
	b := make([]byte, 0, 3*len(shards))
	for i, s := range shards {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, int64(s), 10)
	}
	return string(b)
}

// maxNotifyPayload bounds what ParseNotifyPayload reads: every shard
// once, two digits and a comma each (duplicates allowed up to it).
const maxNotifyPayload = 3 * ShardCount

// ParseNotifyPayload returns the shards a NOTIFY payload names, or false
// when the payload is not a list of shards (another sender, a future
// format, a payload too long): the reader then treats it as "any shard may
// have work". A single shard, the payload of earlier writers, is a list
// of one.
func ParseNotifyPayload(payload string) (shards []int, ok bool) {
	if payload == "" || len(payload) > maxNotifyPayload {
		return nil, false
	}
	for part := range strings.SplitSeq(payload, ",") {
		s, err := strconv.Atoi(part)
		if err != nil || s < 0 || s >= ShardCount || part != strconv.Itoa(s) {
			return nil, false
		}
		shards = append(shards, s)
	}
	return shards, true
}

// Columns are the columns an outbox row is written with (id, shard and
// created_at fill themselves), and FromEvents their values over an events
// row aliased ev. The row carries a copy of its event, payload and
// metadata as the JSON text of the events row's jsonb (converted once, by
// the writer), so the relay's claim reads the outbox alone and puts that
// text into the envelope as it is.
const (
	Columns    = `aggregate_type, aggregate_id, global_position, event_id, event_type, schema_version, version, payload, metadata, occurred_at, recorded_at`
	FromEvents = `ev.aggregate_type, ev.aggregate_id, ev.global_position, ev.event_id, ev.event_type, ev.schema_version, ev.version, ev.payload::text, ev.metadata::text, ev.occurred_at, ev.recorded_at`
)

// CopyFromEventsSQL writes an outbox row for every event, in
// global_position order (tests and benchmarks prefill the outbox with it).
const CopyFromEventsSQL = `INSERT INTO outbox (` + Columns + `)
SELECT ` + FromEvents + ` FROM events ev ORDER BY ev.global_position`

// HeldSQL is the condition of an outbox row o (the alias is required)
// held behind a dead letter: a row of outbox_dead_letters of the same
// aggregate with a lower id. The aggregate's order demands that nothing
// of it overtakes the dead letter, so the relay claims no such row and
// leaves it out of its pending count, until the dead letter is retried
// or discarded.
const HeldSQL = `EXISTS (SELECT 1 FROM outbox_dead_letters d
	WHERE d.aggregate_id = o.aggregate_id AND d.aggregate_type = o.aggregate_type AND d.id < o.id)`
