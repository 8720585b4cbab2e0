-- The outbox row carries a copy of the event it publishes, so the relay's
-- claim reads one table: joining every claimed row with events (an index
-- lookup plus jsonb -> text output per row) was ~3/4 of the claim's
-- PostgreSQL time. payload and metadata are stored as the JSON text of the
-- events row's jsonb (the writer converts them once, in the append
-- statement), exactly what the relay puts in the envelope.
--
-- Existing rows (a backlog at upgrade time) are filled from events here.
-- Writers of the previous release insert rows without the copy and would
-- fail the NOT NULL constraints: stop the API, run the migration (the api
-- and outbox-relay of this release run it at start), then start the rest.
--
-- The foreign key to events goes: the row is built from the events row
-- inserted by the same statement, and the check was a trigger call per
-- appended event.
-- Both tables are locked up front, in the order appenders take them
-- (events, then outbox): an appender still running makes this wait
-- instead of deadlocking with the later DROP CONSTRAINT on events.
LOCK TABLE events, outbox IN ACCESS EXCLUSIVE MODE;

ALTER TABLE outbox
    ADD COLUMN event_id       UUID,
    ADD COLUMN event_type     TEXT,
    ADD COLUMN schema_version INT,
    ADD COLUMN version        BIGINT,
    ADD COLUMN payload        TEXT,
    ADD COLUMN metadata       TEXT,
    ADD COLUMN occurred_at    TIMESTAMPTZ,
    ADD COLUMN recorded_at    TIMESTAMPTZ;

UPDATE outbox o SET event_id = e.event_id, event_type = e.event_type, schema_version = e.schema_version,
    version = e.version, payload = e.payload::text, metadata = e.metadata::text,
    occurred_at = e.occurred_at, recorded_at = e.recorded_at
FROM events e WHERE e.global_position = o.global_position;

ALTER TABLE outbox
    ALTER COLUMN event_id SET NOT NULL,
    ALTER COLUMN event_type SET NOT NULL,
    ALTER COLUMN schema_version SET NOT NULL,
    ALTER COLUMN version SET NOT NULL,
    ALTER COLUMN payload SET NOT NULL,
    ALTER COLUMN metadata SET NOT NULL,
    ALTER COLUMN occurred_at SET NOT NULL,
    ALTER COLUMN recorded_at SET NOT NULL,
    DROP CONSTRAINT outbox_global_position_fkey;
