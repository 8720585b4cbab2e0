package relay

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"cqrsflow/internal/outbox"
)

// claimSQL reads the lowest-id outbox rows above id $4 of the shards of
// leases ($1 shards, $2 epochs) that relay $3 still holds (same owner,
// same epoch, unexpired), at most $5. Each row carries a copy of its
// event, so this reads one table. A first row (id 0, ids start at 1)
// carries only the statement snapshot's xmin, the server's incarnation
// (in the aggregate_type column), the redrive generation (in
// global_position) and the shards still held, so an empty claim reports
// them too. The lease check is the same read the claim makes of the
// outbox, in one round trip: a shard taken over is not read, and the
// caller drops it at once.
//
// Rows of an aggregate above one of its dead letters are held: the
// aggregate's order demands that nothing of it overtakes the dead
// letter. The InitPlan (one EXISTS over the dead letters of the shards)
// keeps the per-row anti-join off the claim while there are none.
const claimSQL = `WITH held AS MATERIALIZED (
			SELECT l.shard FROM relay_leases l
			JOIN unnest($1::smallint[], $2::bigint[]) AS h(shard, epoch) ON h.shard = l.shard AND h.epoch = l.epoch
			WHERE l.owner = $3 AND l.expires_at > clock_timestamp()),
		s AS MATERIALIZED (
			SELECT pg_snapshot_xmin(x)::text::bigint AS xmin,
				concat_ws('/', pg_postmaster_start_time(), pg_stat_get_bgwriter_stat_reset_time(),
					left(pg_walfile_name(pg_current_wal_lsn()), 8)) AS server,
				(SELECT generation FROM outbox_redrives) AS redrive,
				ARRAY(SELECT shard FROM held)::smallint[] AS held
			FROM pg_current_snapshot() x)
		SELECT 0::bigint, 0::smallint, server, '', redrive, '', '', 0, 0::bigint, '', '', now(), now(), xmin, held FROM s
		UNION ALL
		(SELECT id, shard, aggregate_type, aggregate_id, global_position,
			event_id::text, event_type, schema_version, version, payload, metadata, occurred_at, recorded_at, 0, NULL
		FROM outbox o WHERE shard = ANY(ARRAY(SELECT shard FROM held)) AND id > $4
		AND (NOT EXISTS (SELECT 1 FROM outbox_dead_letters WHERE shard = ANY($1::smallint[]))
			OR NOT ` + outbox.HeldSQL + `)
		%s
		ORDER BY id LIMIT $5)`

// excludeSQL adds the worker's suspects to claimSQL: their aggregates'
// rows above the suspect row wait until it is published or dead-lettered.
const excludeSQL = `AND NOT EXISTS (SELECT 1 FROM unnest($6::text[], $7::text[], $8::bigint[]) AS x(typ, id, above)
			WHERE x.id = o.aggregate_id AND x.typ = o.aggregate_type AND o.id > x.above)`

var (
	claimPlain    = fmt.Sprintf(claimSQL, "")
	claimExcluded = fmt.Sprintf(claimSQL, excludeSQL)
)

// claimed is what a claim read.
type claimed struct {
	rows []row
	snap snapshot
	held []int16 // shards of the leases given that the relay still holds
	lost []int16 // and those it no longer holds
}

// claim reads the lowest-id claimable outbox rows above id after of the
// shards of leases that this relay still holds (claimSQL), skipping the
// rows excl names, with the snapshot lowWater needs. It reads what is
// committed now: a row committed later with a lower id is still there on
// a later claim, because rows leave the outbox only by finish and the
// mark passes an id only once no transaction that could still commit a
// row below it is running.
//
// backlog says the previous claim came back full: the statement is then
// planned for the values at hand (simple protocol); otherwise the
// connection's cached generic plan runs (see planOnce).
func (s *store) claim(ctx context.Context, leases map[int16]int64, after int64, limit int, excl []exclusion, backlog bool) (claimed, error) {
	shards, epochs := split(leases)
	q, args := claimPlain, []any{shards, epochs, s.id, after, limit}
	if len(excl) > 0 {
		typs, ids, above := make([]string, len(excl)), make([]string, len(excl)), make([]int64, len(excl))
		for i, x := range excl {
			typs[i], ids[i], above[i] = x.typ, x.id, x.above
		}
		q, args = claimExcluded, append(args, typs, ids, above)
	}
	if backlog {
		args = append([]any{pgx.QueryExecModeSimpleProtocol}, args...)
	}
	var out claimed
	err := s.planOnce(ctx, func(c *pgxpool.Conn) error {
		var err error
		out, err = scanClaim(c.Query(ctx, q, args...))
		return err
	})
	if err != nil {
		return claimed{}, fmt.Errorf("claiming outbox rows: %w", err)
	}
	for _, sh := range shards {
		if !slices.Contains(out.held, sh) {
			out.lost = append(out.lost, sh)
		}
	}
	return out, nil
}

// scanClaim reads claimSQL's result.
func scanClaim(rows pgx.Rows, err error) (claimed, error) {
	if err != nil {
		return claimed{}, err
	}
	var out claimed
	var r row
	var xmin int64
	var held []int16
	_, err = pgx.ForEachRow(rows, []any{&r.ID, &r.Shard, &r.AggregateType, &r.AggregateID, &r.GlobalPosition,
		&r.EventID, &r.EventType, &r.SchemaVersion, &r.Version, &r.Payload, &r.Metadata, &r.OccurredAt, &r.RecordedAt,
		&xmin, &held}, func() error {
		if r.ID == 0 {
			out.snap = snapshot{xmin: uint64(xmin), server: r.AggregateType, redrive: r.GlobalPosition}
			out.held = held
			return nil
		}
		out.rows = append(out.rows, r)
		return nil
	})
	if err != nil {
		return claimed{}, err
	}
	if out.snap.xmin == 0 {
		return claimed{}, errors.New("the snapshot row is missing")
	}
	// Per-key order rests on id order; UNION ALL keeps its branches'
	// order, and this makes sure of it.
	if !slices.IsSortedFunc(out.rows, func(a, b row) int { return cmp.Compare(a.ID, b.ID) }) {
		slices.SortFunc(out.rows, func(a, b row) int { return cmp.Compare(a.ID, b.ID) })
	}
	return out, nil
}

// genericPlans marks a connection on which planOnce set plan_cache_mode.
const genericPlans = "cqrsflow.relay.generic_plans"

// planOnce runs f on a pool connection whose prepared statements are
// planned once (plan_cache_mode = force_generic_plan, set the first time
// the relay uses the connection). PostgreSQL's default plans each
// execution of the claim and the finish anew while their parameters
// make a generic plan look dearer, and planning the claim costs about
// ten times as much as running it at a steady rate. The generic plans
// of the claim (an index scan on the outbox above the mark, or a bitmap
// scan and sort of the few rows above it when the table was small at
// planning) and of the finish (lookups by id) are the ones those
// statements need at a steady rate; a claim after a full batch goes
// through the simple protocol instead and is planned for its values.
// The setting stays with the connection: the pool is the relay's.
func (s *store) planOnce(ctx context.Context, f func(*pgxpool.Conn) error) error {
	return s.pool.AcquireFunc(ctx, func(c *pgxpool.Conn) error {
		data := c.Conn().PgConn().CustomData()
		if data[genericPlans] == nil {
			if _, err := c.Exec(ctx, `SET plan_cache_mode = force_generic_plan`); err != nil {
				return fmt.Errorf("setting plan_cache_mode: %w", err)
			}
			data[genericPlans] = true
		}
		return f(c)
	})
}
