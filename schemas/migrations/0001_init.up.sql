-- cqrsflow event store, outbox and relay leases.
-- The events table is the source of truth; the outbox is a work queue of
-- events not yet acknowledged by Kafka. A row leaves the outbox only after
-- the broker acknowledged it.

-- One row per aggregate: its current version. Appending takes this row's
-- lock first, so appends to one aggregate are serialized and the outbox ids
-- of one aggregate's events are allocated in version order.
CREATE TABLE aggregates (
    aggregate_type TEXT        NOT NULL,
    aggregate_id   TEXT        NOT NULL,
    version        BIGINT      NOT NULL CHECK (version >= 0),
    updated_at     TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (aggregate_type, aggregate_id)
);

CREATE TABLE events (
    global_position BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id        UUID        NOT NULL UNIQUE,
    aggregate_type  TEXT        NOT NULL,
    aggregate_id    TEXT        NOT NULL,
    version         BIGINT      NOT NULL CHECK (version > 0),
    event_type      TEXT        NOT NULL,
    schema_version  INT         NOT NULL CHECK (schema_version > 0),
    payload         JSONB       NOT NULL,
    metadata        JSONB       NOT NULL DEFAULT '{}'::jsonb,
    occurred_at     TIMESTAMPTZ NOT NULL,
    recorded_at     TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    UNIQUE (aggregate_type, aggregate_id, version)
);

-- Outbox: one row per event to publish. shard is derived from the aggregate
-- id in the database so every writer agrees on it (64 shards; relays own
-- shards through leases). Rows of one aggregate always share a shard.
CREATE TABLE outbox (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    aggregate_type  TEXT        NOT NULL,
    aggregate_id    TEXT        NOT NULL,
    global_position BIGINT      NOT NULL REFERENCES events (global_position),
    shard           SMALLINT    NOT NULL GENERATED ALWAYS AS ((hashtextextended(aggregate_id, 0) & 63)::smallint) STORED,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX outbox_shard_id_idx ON outbox (shard, id);

-- Idempotency keys: the first response to a keyed write is stored in the
-- same transaction as its events; a retry returns it and appends nothing.
CREATE TABLE idempotency_keys (
    key           TEXT        NOT NULL,
    principal     TEXT        NOT NULL DEFAULT '',
    request_hash  BYTEA       NOT NULL,
    status_code   INT         NOT NULL,
    response_body BYTEA       NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (principal, key)
);
CREATE INDEX idempotency_keys_created_at_idx ON idempotency_keys (created_at);

-- Relay leases over outbox shards: a relay publishes a shard only while it
-- holds an unexpired lease; epoch increases on every change of owner.
CREATE TABLE relay_leases (
    shard      SMALLINT    PRIMARY KEY CHECK (shard >= 0 AND shard < 64),
    owner      TEXT        NOT NULL DEFAULT '',
    epoch      BIGINT      NOT NULL DEFAULT 0,
    expires_at TIMESTAMPTZ NOT NULL DEFAULT '-infinity'
);
INSERT INTO relay_leases (shard) SELECT generate_series(0, 63);
