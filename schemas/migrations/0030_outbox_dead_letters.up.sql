-- Outbox rows Kafka refuses for good (a record above the topic's
-- max.message.bytes, a topic that is missing or not authorized, an
-- envelope that cannot be built) leave the outbox for this table after a
-- bounded number of confirmed attempts, in the same transaction that
-- deletes them from the outbox (under the relay's lease fencing). The
-- copy is the whole outbox row; id is the row's outbox id, so
-- `outbox-relay dead retry` puts it back at its original position, ahead
-- of the later rows of its aggregate.
--
-- While an aggregate has a dead letter, its outbox rows with a higher id
-- are held: the relay's claim skips them (per-aggregate order), every
-- other aggregate keeps flowing. The index serves that anti-join and
-- the per-aggregate lookups of the CLI.
CREATE TABLE outbox_dead_letters (
    id               BIGINT      PRIMARY KEY,
    shard            SMALLINT    NOT NULL,
    aggregate_type   TEXT        NOT NULL,
    aggregate_id     TEXT        NOT NULL,
    global_position  BIGINT      NOT NULL,
    event_id         UUID        NOT NULL,
    event_type       TEXT        NOT NULL,
    schema_version   INT         NOT NULL,
    version          BIGINT      NOT NULL,
    payload          TEXT        NOT NULL,
    metadata         TEXT        NOT NULL,
    occurred_at      TIMESTAMPTZ NOT NULL,
    recorded_at      TIMESTAMPTZ NOT NULL,
    created_at       TIMESTAMPTZ NOT NULL,
    reason           TEXT        NOT NULL,
    error            TEXT        NOT NULL,
    attempts         INT         NOT NULL CHECK (attempts > 0),
    first_failed_at  TIMESTAMPTZ NOT NULL,
    last_failed_at   TIMESTAMPTZ NOT NULL,
    dead_lettered_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    relay_id         TEXT        NOT NULL
);
CREATE INDEX outbox_dead_letters_aggregate_idx ON outbox_dead_letters (aggregate_id, aggregate_type, id);

-- Dead letters an operator dropped from publication (`outbox-relay dead
-- discard`): the audit trail of events that are in the events table but
-- were never published.
CREATE TABLE outbox_discarded (
    LIKE outbox_dead_letters,
    discarded_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (id)
);

-- The redrive generation. Removing a dead letter (retry, discard, or a
-- DELETE by hand) releases rows that may lie below a relay worker's
-- low-water mark: the held rows, which the claims skipped, and a retried
-- row put back under its old id. Every claim reads the generation in its
-- snapshot and starts over from the start of its shards when it changed
-- (internal/relay, lowWater). The trigger bumps it in the transaction
-- that removes the dead letters, so a claim that sees the new generation
-- also sees the rows it released.
CREATE TABLE outbox_redrives (
    single     BOOLEAN PRIMARY KEY DEFAULT true CHECK (single),
    generation BIGINT  NOT NULL DEFAULT 0
);
INSERT INTO outbox_redrives DEFAULT VALUES;

CREATE FUNCTION outbox_redrive_bump() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE outbox_redrives SET generation = generation + 1;
    RETURN NULL;
END $$;

CREATE TRIGGER outbox_dead_letters_redrive
    AFTER DELETE OR UPDATE OR TRUNCATE ON outbox_dead_letters
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_redrive_bump();
