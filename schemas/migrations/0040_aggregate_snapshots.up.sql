-- One snapshot per aggregate: its state as of `version`, encoded by the
-- write side's fold (internal/command), written in the same transaction
-- as the events that produced it. Appending reads the snapshot and only
-- the events after `version` instead of the whole history.
--
-- schema_version is the version of the state's encoding and of the fold
-- that computed it (product.StateVersion, order.StateVersion). A snapshot
-- with another schema_version than the running code's is ignored (the
-- command folds the whole history and writes a current one) until
-- `api snapshots rebuild` rewrites it.
--
-- The table is derived data: dropping it (the down migration) loses
-- nothing, the next append of each aggregate folds its whole history.
CREATE TABLE aggregate_snapshots (
    aggregate_type TEXT        NOT NULL,
    aggregate_id   TEXT        NOT NULL,
    version        BIGINT      NOT NULL CHECK (version > 0),
    schema_version INT         NOT NULL CHECK (schema_version > 0),
    state          JSONB       NOT NULL,
    updated_at     TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (aggregate_type, aggregate_id)
);
