-- Back to outbox rows that reference events (the previous release's relay
-- joins them). Rows whose event is gone would fail the foreign key; there
-- are none unless events were deleted by hand.
ALTER TABLE outbox
    DROP COLUMN event_id,
    DROP COLUMN event_type,
    DROP COLUMN schema_version,
    DROP COLUMN version,
    DROP COLUMN payload,
    DROP COLUMN metadata,
    DROP COLUMN occurred_at,
    DROP COLUMN recorded_at,
    ADD CONSTRAINT outbox_global_position_fkey FOREIGN KEY (global_position) REFERENCES events (global_position);
