-- Snapshots are derived from the events: nothing is lost, appends fold
-- the whole history again.
DROP TABLE IF EXISTS aggregate_snapshots;
