-- Live outbox-relay processes: each relay upserts its row every lease
-- renewal. The number of unexpired rows is the "live relays" count a relay
-- uses to cap its share of the 64 outbox shards at ceil(64 / live), so a
-- relay that just started (and owns no lease yet) is counted and the
-- others hand shards over to it.
CREATE TABLE relay_members (
    relay_id   TEXT        PRIMARY KEY,
    started_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    expires_at TIMESTAMPTZ NOT NULL
);
