package relay

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// row is one claimed outbox row (with its copy of the event).
type row struct {
	ID             int64
	Shard          int16
	AggregateType  string
	AggregateID    string
	GlobalPosition int64
	EventID        string
	EventType      string
	SchemaVersion  int
	Version        int64
	Payload        []byte
	Metadata       []byte
	OccurredAt     time.Time
	RecordedAt     time.Time
}

// store holds the relay's SQL. Every statement is a single round trip
// except deleteAcked, which is one short transaction.
type store struct {
	pool *pgxpool.Pool
	id   string
	ttl  time.Duration
}

func (s *store) heartbeat(ctx context.Context) (live int, err error) {
	b := &pgx.Batch{}
	b.Queue(`INSERT INTO relay_members (relay_id, expires_at) VALUES ($1, clock_timestamp() + $2::interval)
		ON CONFLICT (relay_id) DO UPDATE SET expires_at = EXCLUDED.expires_at`, s.id, s.ttl)
	b.Queue(`DELETE FROM relay_members WHERE expires_at < clock_timestamp() - interval '1 hour'`)
	b.Queue(`SELECT count(*) FROM relay_members WHERE expires_at > clock_timestamp()`)
	br := s.pool.SendBatch(ctx, b)
	defer br.Close()
	if _, err := br.Exec(); err != nil {
		return 0, fmt.Errorf("upserting relay heartbeat: %w", err)
	}
	if _, err := br.Exec(); err != nil {
		return 0, fmt.Errorf("pruning dead relays: %w", err)
	}
	if err := br.QueryRow().Scan(&live); err != nil {
		return 0, fmt.Errorf("counting live relays: %w", err)
	}
	return live, br.Close()
}

func (s *store) leave(ctx context.Context) error {
	_, err := s.pool.Exec(ctx, `DELETE FROM relay_members WHERE relay_id = $1`, s.id)
	return err
}

func scanLeases(rows pgx.Rows) (map[int16]int64, error) {
	out := map[int16]int64{}
	var shard int16
	var epoch int64
	_, err := pgx.ForEachRow(rows, []any{&shard, &epoch}, func() error {
		out[shard] = epoch
		return nil
	})
	return out, err
}

// lockOwnedInOrder selects, and row-locks in shard order, the unexpired
// leases owned by $1. Every statement that locks several lease rows
// (renew, adopt, release, deleteAcked's FOR SHARE) locks them in shard
// order, so a renewal and a concurrent delete can wait for each other but
// never deadlock (an UPDATE's own scan order is the heap order, which
// changes with every update). acquire skips locked rows instead of waiting.
const lockOwnedInOrder = `SELECT shard FROM relay_leases
		WHERE owner = $1 AND expires_at > clock_timestamp() ORDER BY shard FOR UPDATE`

// renew extends every unexpired lease this relay holds and returns them.
func (s *store) renew(ctx context.Context) (map[int16]int64, error) {
	rows, err := s.pool.Query(ctx, `UPDATE relay_leases l SET expires_at = clock_timestamp() + $2::interval
		FROM (`+lockOwnedInOrder+`) o
		WHERE l.shard = o.shard RETURNING l.shard, l.epoch`, s.id, s.ttl)
	if err != nil {
		return nil, fmt.Errorf("renewing leases: %w", err)
	}
	m, err := scanLeases(rows)
	if err != nil {
		return nil, fmt.Errorf("renewing leases: %w", err)
	}
	return m, nil
}

// adopt takes back, with a new epoch, the unexpired leases a previous
// process with the same relay id still holds (a restart with a stable
// RELAY_ID resumes at once instead of waiting for the TTL).
func (s *store) adopt(ctx context.Context) (map[int16]int64, error) {
	rows, err := s.pool.Query(ctx, `UPDATE relay_leases l SET epoch = l.epoch + 1, expires_at = clock_timestamp() + $2::interval
		FROM (`+lockOwnedInOrder+`) o
		WHERE l.shard = o.shard RETURNING l.shard, l.epoch`, s.id, s.ttl)
	if err != nil {
		return nil, fmt.Errorf("adopting leases: %w", err)
	}
	m, err := scanLeases(rows)
	if err != nil {
		return nil, fmt.Errorf("adopting leases: %w", err)
	}
	return m, nil
}

// acquire takes up to n free or expired leases; epoch+1 fences the previous owner.
func (s *store) acquire(ctx context.Context, n int) (map[int16]int64, error) {
	if n <= 0 {
		return map[int16]int64{}, nil
	}
	rows, err := s.pool.Query(ctx, `UPDATE relay_leases l SET owner = $1, epoch = l.epoch + 1, expires_at = clock_timestamp() + $2::interval
		FROM (SELECT shard FROM relay_leases WHERE expires_at <= clock_timestamp()
		      ORDER BY shard LIMIT $3 FOR UPDATE SKIP LOCKED) free
		WHERE l.shard = free.shard AND l.expires_at <= clock_timestamp()
		RETURNING l.shard, l.epoch`, s.id, s.ttl, n)
	if err != nil {
		return nil, fmt.Errorf("acquiring leases: %w", err)
	}
	m, err := scanLeases(rows)
	if err != nil {
		return nil, fmt.Errorf("acquiring leases: %w", err)
	}
	return m, nil
}

// release hands leases back (only those still held with the same epoch).
func (s *store) release(ctx context.Context, leases map[int16]int64) error {
	if len(leases) == 0 {
		return nil
	}
	shards, epochs := split(leases)
	_, err := s.pool.Exec(ctx, `UPDATE relay_leases l SET owner = '', expires_at = '-infinity'
		FROM (SELECT l.shard FROM relay_leases l
		      JOIN unnest($2::smallint[], $3::bigint[]) AS h(shard, epoch) ON h.shard = l.shard AND h.epoch = l.epoch
		      WHERE l.owner = $1 ORDER BY l.shard FOR UPDATE OF l) r
		WHERE l.shard = r.shard`, s.id, shards, epochs)
	if err != nil {
		return fmt.Errorf("releasing leases: %w", err)
	}
	return nil
}

// held returns which of the given leases this relay still holds (same
// owner, same epoch, unexpired).
func (s *store) held(ctx context.Context, leases map[int16]int64) (map[int16]int64, error) {
	shards, epochs := split(leases)
	rows, err := s.pool.Query(ctx, `SELECT l.shard, l.epoch FROM relay_leases l
		JOIN unnest($2::smallint[], $3::bigint[]) AS h(shard, epoch) ON h.shard = l.shard AND h.epoch = l.epoch
		WHERE l.owner = $1 AND l.expires_at > clock_timestamp()`, s.id, shards, epochs)
	if err != nil {
		return nil, fmt.Errorf("checking leases: %w", err)
	}
	m, err := scanLeases(rows)
	if err != nil {
		return nil, fmt.Errorf("checking leases: %w", err)
	}
	return m, nil
}

// claim reads the lowest-id outbox rows above id after of the given
// shards (each row carries a copy of its event, so this reads one table),
// with the xmin of the statement's snapshot (see lowWater). It reads
// what is committed now: a row committed later with a lower id is still
// there on a later claim, because rows leave the outbox only by
// deleteAcked and the mark passes an id only once no transaction that
// could still commit a row below it is running.
func (s *store) claim(ctx context.Context, shards []int16, after int64, limit int) ([]row, snapshot, error) {
	// The first row (id 0, ids start at 1) only carries the snapshot's
	// xmin and the server's incarnation (in the aggregate_type column), so
	// an empty claim reports them too.
	rows, err := s.pool.Query(ctx, `WITH s AS MATERIALIZED (
			SELECT pg_snapshot_xmin(x)::text::bigint AS xmin,
				concat_ws('/', pg_postmaster_start_time(), pg_stat_get_bgwriter_stat_reset_time(),
					left(pg_walfile_name(pg_current_wal_lsn()), 8)) AS server
			FROM pg_current_snapshot() x)
		SELECT 0::bigint, 0::smallint, server, '', 0::bigint, '', '', 0, 0::bigint, '', '', now(), now(), xmin FROM s
		UNION ALL
		(SELECT id, shard, aggregate_type, aggregate_id, global_position,
			event_id::text, event_type, schema_version, version, payload, metadata, occurred_at, recorded_at, 0
		FROM outbox WHERE shard = ANY($1::smallint[]) AND id > $2
		ORDER BY id LIMIT $3)`, shards, after, limit)
	if err != nil {
		return nil, snapshot{}, fmt.Errorf("claiming outbox rows: %w", err)
	}
	var out []row
	var r row
	var snap snapshot
	var xmin int64
	_, err = pgx.ForEachRow(rows, []any{&r.ID, &r.Shard, &r.AggregateType, &r.AggregateID, &r.GlobalPosition,
		&r.EventID, &r.EventType, &r.SchemaVersion, &r.Version, &r.Payload, &r.Metadata, &r.OccurredAt, &r.RecordedAt,
		&xmin}, func() error {
		if r.ID == 0 {
			snap = snapshot{xmin: uint64(xmin), server: r.AggregateType}
			return nil
		}
		out = append(out, r)
		return nil
	})
	if err != nil {
		return nil, snapshot{}, fmt.Errorf("claiming outbox rows: %w", err)
	}
	if snap.xmin == 0 {
		return nil, snapshot{}, errors.New("claiming outbox rows: the snapshot row is missing")
	}
	// Per-key order rests on id order; UNION ALL keeps its branches'
	// order, and this makes sure of it.
	if !slices.IsSortedFunc(out, func(a, b row) int { return cmp.Compare(a.ID, b.ID) }) {
		slices.SortFunc(out, func(a, b row) int { return cmp.Compare(a.ID, b.ID) })
	}
	return out, snap, nil
}

// deleteAcked deletes acked rows of the shards whose lease this relay still
// holds with the same epoch, in one statement: the lease rows are locked
// FOR SHARE first, so a concurrent takeover (an UPDATE of the lease row)
// waits for this delete to commit, or — if it committed first — makes the
// lock's re-check fail and nothing of that shard is deleted. It returns the
// number of rows deleted, the shards whose lease was gone, and the
// deleting transaction's id (lowWater's bound for the batch's claim).
//
// The statement commits with synchronous_commit=off: if PostgreSQL crashes
// before the WAL flush, the delete is lost and those rows are published
// again (duplicates, never loss); it saves an fsync wait per batch.
func (s *store) deleteAcked(ctx context.Context, ids []int64, leases map[int16]int64) (int64, []int16, uint64, error) {
	shards, epochs := split(leases)
	var n, xid int64
	var heldShards []int16
	err := s.pool.QueryRow(ctx, `WITH async AS (SELECT set_config('synchronous_commit', 'off', true) AS v),
		held AS (
			SELECT l.shard FROM relay_leases l
			JOIN unnest($2::smallint[], $3::bigint[]) AS h(shard, epoch) ON h.shard = l.shard AND h.epoch = l.epoch
			WHERE l.owner = $1 AND l.expires_at > clock_timestamp() ORDER BY l.shard FOR SHARE OF l),
		del AS (DELETE FROM outbox WHERE id = ANY($4::bigint[]) AND shard IN (SELECT shard FROM held) RETURNING 1)
		SELECT (SELECT count(*) FROM del), ARRAY(SELECT shard FROM held)::smallint[], (SELECT v FROM async),
			pg_current_xact_id()::text::bigint`,
		s.id, shards, epochs, ids).Scan(&n, &heldShards, nil, &xid)
	if err != nil {
		return 0, nil, 0, fmt.Errorf("deleting acked rows: %w", err)
	}
	held := make(map[int16]bool, len(heldShards))
	for _, sh := range heldShards {
		held[sh] = true
	}
	var lost []int16
	for sh := range leases {
		if !held[sh] {
			lost = append(lost, sh)
		}
	}
	return n, lost, uint64(xid), nil
}

// stats returns the outbox size (planner estimate when above 100k rows,
// exact count otherwise) and the age of the oldest row in seconds. The
// oldest row is the lowest id: ids and created_at are both taken at insert.
func (s *store) stats(ctx context.Context) (pending int64, oldestAge float64, err error) {
	err = s.pool.QueryRow(ctx, `SELECT
			CASE WHEN c.reltuples > 100000 THEN c.reltuples::bigint ELSE (SELECT count(*) FROM outbox) END,
			COALESCE(EXTRACT(EPOCH FROM clock_timestamp() - (SELECT created_at FROM outbox ORDER BY id LIMIT 1)), 0)::float8
		FROM pg_class c WHERE c.oid = 'outbox'::regclass`).Scan(&pending, &oldestAge)
	if err != nil {
		return 0, 0, fmt.Errorf("reading outbox stats: %w", err)
	}
	return pending, oldestAge, nil
}

func split(leases map[int16]int64) ([]int16, []int64) {
	shards := make([]int16, 0, len(leases))
	epochs := make([]int64, 0, len(leases))
	for s, e := range leases {
		shards = append(shards, s)
		epochs = append(epochs, e)
	}
	return shards, epochs
}
