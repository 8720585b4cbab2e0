-- How far each `outbox-relay backfill` run got, keyed by the run's name,
-- so an interrupted run resumes where it stopped. position is the highest
-- global position of the events table whose record Kafka acknowledged
-- (every selected event at or below it is on the topic); a resumed run
-- continues above it, up to the horizon it computes at its own start.
-- aggregate_type, selection and topic pin what the run publishes: a run
-- resumed with another selection is refused.
CREATE TABLE backfill_progress (
    run            TEXT        PRIMARY KEY,
    aggregate_type TEXT        NOT NULL,
    selection      TEXT        NOT NULL,
    topic          TEXT        NOT NULL,
    position       BIGINT      NOT NULL CHECK (position >= 0),
    published      BIGINT      NOT NULL DEFAULT 0 CHECK (published >= 0),
    started_at     TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    updated_at     TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    finished_at    TIMESTAMPTZ
);
