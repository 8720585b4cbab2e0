package eventstore

import "cqrsflow/internal/outbox"

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
)

// appendSQL inserts the events (versions base+1..base+n) and their outbox
// rows in one statement, outbox ids allocated in version order. It returns
// the aggregate's outbox shard for the notifier.
var appendSQL = `WITH ev AS (
  INSERT INTO events (event_id, aggregate_type, aggregate_id, version, event_type, schema_version, payload, metadata, occurred_at)
  SELECT x.event_id, $1, $2, $3::bigint + x.ord, x.event_type, x.schema_version, x.payload, $8::jsonb, $9
  FROM unnest($4::uuid[], $5::text[], $6::int[], $7::jsonb[]) WITH ORDINALITY AS x(event_id, event_type, schema_version, payload, ord)
  RETURNING *
), ob AS (
  INSERT INTO outbox (` + outbox.Columns + `)
  SELECT ` + outbox.FromEvents + ` FROM ev ORDER BY ev.version
)
SELECT event_id::text, event_type, version, global_position, recorded_at,
  ` + outbox.ShardSQL("$2") + `::int AS shard
FROM ev ORDER BY version`
