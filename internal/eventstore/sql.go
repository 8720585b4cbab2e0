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

// The statements of a batch (batch.go): each covers every command of the
// batch at once, over arrays, so a batch costs the same few statements
// whatever its size.
const (
	// claimKeysSQL claims the batch's idempotency keys in one order, so
	// two batches waiting for each other's keys cannot deadlock; it
	// returns the keys that were free.
	claimKeysSQL = `INSERT INTO idempotency_keys (principal, key, request_hash, status_code, response_body)
SELECT x.p, x.k, x.h, 0, '' FROM unnest($1::text[], $2::text[], $3::bytea[]) AS x(p, k, h) ORDER BY x.p, x.k
ON CONFLICT (principal, key) DO NOTHING
RETURNING principal, key`
	// lockHeadsSQL locks the head rows that exist, in (type, id) order:
	// the row locks are taken above the sort, so concurrent batches lock
	// shared aggregates in the same order.
	lockHeadsSQL = `SELECT a.aggregate_type, a.aggregate_id, a.version FROM aggregates a
WHERE (a.aggregate_type, a.aggregate_id) IN (SELECT * FROM unnest($1::text[], $2::text[]))
ORDER BY a.aggregate_type, a.aggregate_id FOR UPDATE OF a`
	loadHistoriesSQL = `SELECT e.aggregate_type, e.aggregate_id, e.version, e.event_type, e.schema_version, e.payload FROM events e
WHERE (e.aggregate_type, e.aggregate_id) IN (SELECT * FROM unnest($1::text[], $2::text[]))
ORDER BY e.aggregate_type, e.aggregate_id, e.version`
	releaseKeysSQL = `DELETE FROM idempotency_keys k USING unnest($1::text[], $2::text[]) AS x(p, k)
WHERE k.principal = x.p AND k.key = x.k`
	readKeysSQL = `SELECT k.principal, k.key, k.request_hash, k.status_code, k.response_body
FROM idempotency_keys k JOIN unnest($1::text[], $2::text[]) AS x(p, k) ON k.principal = x.p AND k.key = x.k`
	storeKeysSQL = `UPDATE idempotency_keys k SET status_code = x.s, response_body = x.b
FROM unnest($1::text[], $2::text[], $3::int[], $4::bytea[]) AS x(p, k, s, b)
WHERE k.principal = x.p AND k.key = x.k`
	// updateHeadsSQL advances the locked head rows and fails (division by
	// zero) unless every one was still at the version it was locked at:
	// the failure aborts the transaction on the server, so its COMMIT,
	// already in the pipeline, cannot commit a batch that went wrong.
	updateHeadsSQL = `WITH u AS (
  UPDATE aggregates a SET version = x.v, updated_at = clock_timestamp()
  FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[]) AS x(t, i, v, old)
  WHERE a.aggregate_type = x.t AND a.aggregate_id = x.i AND a.version = x.old
  RETURNING 1
)
SELECT 1 / (CASE WHEN count(*) = cardinality($1::text[]) THEN 1 ELSE 0 END) FROM u`
	insertHeadsSQL = `INSERT INTO aggregates (aggregate_type, aggregate_id, version)
SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[])`
)

// appendBatchSQL inserts the events of every command of a batch and their
// outbox rows in one statement. The events are inserted in array order
// (arrival order, each aggregate's versions ascending), so both their
// global positions and the outbox ids follow each aggregate's versions.
var appendBatchSQL = `WITH ev AS (
  INSERT INTO events (event_id, aggregate_type, aggregate_id, version, event_type, schema_version, payload, metadata, occurred_at)
  SELECT x.event_id, x.t, x.i, x.v, x.event_type, x.schema_version, x.payload, x.metadata, x.occurred_at
  FROM unnest($1::uuid[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::int[], $7::jsonb[], $8::jsonb[], $9::timestamptz[])
    WITH ORDINALITY AS x(event_id, t, i, v, event_type, schema_version, payload, metadata, occurred_at, ord)
  ORDER BY x.ord
  RETURNING *
), ob AS (
  INSERT INTO outbox (` + outbox.Columns + `)
  SELECT ` + outbox.FromEvents + ` FROM ev ORDER BY ev.global_position
)
SELECT event_id::text, version, global_position, recorded_at, ` + outbox.ShardSQL("aggregate_id") + `::int AS shard FROM ev`
