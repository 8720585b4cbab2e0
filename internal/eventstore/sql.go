package eventstore

// The statements of the append transaction; the package doc shows their order.

const (
	claimKeySQL = `INSERT INTO idempotency_keys (principal, key, request_hash, status_code, response_body)
VALUES ($1, $2, $3, 0, '') ON CONFLICT (principal, key) DO NOTHING`
	readKeySQL  = `SELECT request_hash, status_code, response_body FROM idempotency_keys WHERE principal = $1 AND key = $2`
	storeKeySQL = `UPDATE idempotency_keys SET status_code = $3, response_body = $4 WHERE principal = $1 AND key = $2`

	lockHeadSQL = `SELECT version FROM aggregates WHERE aggregate_type = $1 AND aggregate_id = $2 FOR UPDATE`
	// Unconditional increment (AnyVersion without a fold): the upsert takes
	// the head row lock and returns the new version.
	upsertHeadSQL = `INSERT INTO aggregates AS a (aggregate_type, aggregate_id, version) VALUES ($1, $2, $3)
ON CONFLICT (aggregate_type, aggregate_id) DO UPDATE SET version = a.version + $3, updated_at = clock_timestamp()
RETURNING version`
	insertHeadSQL = `INSERT INTO aggregates (aggregate_type, aggregate_id, version) VALUES ($1, $2, $3)`
	updateHeadSQL = `UPDATE aggregates SET version = $3, updated_at = clock_timestamp()
WHERE aggregate_type = $1 AND aggregate_id = $2 AND version = $4`
	currentSQL = `SELECT version FROM aggregates WHERE aggregate_type = $1 AND aggregate_id = $2`

	loadSQL = `SELECT version, event_type, schema_version, payload FROM events
WHERE aggregate_type = $1 AND aggregate_id = $2 ORDER BY version`

	// One statement inserts the events (versions base+1..base+n) and their
	// outbox rows, outbox ids allocated in version order.
	appendSQL = `WITH ev AS (
  INSERT INTO events (event_id, aggregate_type, aggregate_id, version, event_type, schema_version, payload, metadata, occurred_at)
  SELECT x.event_id, $1, $2, $3::bigint + x.ord, x.event_type, x.schema_version, x.payload, $8::jsonb, $9
  FROM unnest($4::uuid[], $5::text[], $6::int[], $7::jsonb[]) WITH ORDINALITY AS x(event_id, event_type, schema_version, payload, ord)
  RETURNING *
), ob AS (
  INSERT INTO outbox (` + OutboxColumns + `)
  SELECT ` + OutboxFromEvents + ` FROM ev ORDER BY ev.version
)
SELECT event_id::text, event_type, version, global_position, recorded_at,
  (hashtextextended($2, 0) & 63)::int AS shard -- the outbox.shard expression
FROM ev ORDER BY version`
)

// OutboxColumns are the columns of an outbox row written from an events
// row, and OutboxFromEvents their values over an events row aliased ev:
// the row carries a copy of the event (payload and metadata as JSON text),
// so the relay's claim reads the outbox alone.
const (
	OutboxColumns    = `aggregate_type, aggregate_id, global_position, event_id, event_type, schema_version, version, payload, metadata, occurred_at, recorded_at`
	OutboxFromEvents = `ev.aggregate_type, ev.aggregate_id, ev.global_position, ev.event_id, ev.event_type, ev.schema_version, ev.version, ev.payload::text, ev.metadata::text, ev.occurred_at, ev.recorded_at`
	// CopyEventsToOutboxSQL writes an outbox row for every event, in
	// global_position order (tests and benchmarks prefill with it).
	CopyEventsToOutboxSQL = `INSERT INTO outbox (` + OutboxColumns + `)
SELECT ` + OutboxFromEvents + ` FROM events ev ORDER BY ev.global_position`
)
