package relay

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"cqrsflow/internal/envelope"
	"cqrsflow/internal/outbox"
)

// row is one claimed outbox row (with its copy of the event).
type row struct {
	ID    int64
	Shard int16
	// Row is the event the outbox row carries, as the envelope is built
	// from it (record) without a copy.
	envelope.Row
}

// store holds the relay's SQL. Every statement is a single round trip.
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
// (renew, adopt, release, finish's FOR SHARE) locks them in shard
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

// finished is what finish did.
type finished struct {
	deleted, moved int64
	lost           []int16 // shards whose lease was gone: nothing of them changed
	xid            uint64  // the transaction's id (lowWater's bound for the batch's claim)
}

// finishSQL deletes the acked rows ($4 ids, $5 their shards) of the
// leases ($2 shards, $3 epochs) relay $1 still holds, and moves the dead
// rows (moveSQL) to outbox_dead_letters, in one statement: the lease rows are
// locked FOR SHARE first, so a concurrent takeover (an UPDATE of the
// lease row) waits for this statement to commit, or, if it committed
// first, makes the lock's re-check fail and nothing of that shard is
// deleted or dead-lettered (the new owner republishes those rows, or
// dead-letters them after its own attempts). A row moves with its whole
// outbox row: the delete's RETURNING feeds the insert, so it is in
// exactly one of the two tables at any time.
//
// The acked rows are deleted by (id, shard) pairs, each an index lookup:
// a condition on the shard alone lets the planner walk every index entry
// of the held shards, the deleted rows' too until VACUUM removes them.
// The dead-letter part is left out of the statement when there is none,
// which is nearly always.
//
// The statement commits with synchronous_commit=off: if PostgreSQL
// crashes before the WAL flush, the delete is lost and those rows are
// published again, or tried again (duplicates, never loss); it saves an
// fsync wait per batch.
const finishSQL = `WITH async AS (SELECT set_config('synchronous_commit', 'off', true) AS v),
		held AS (
			SELECT l.shard FROM relay_leases l
			JOIN unnest($2::smallint[], $3::bigint[]) AS h(shard, epoch) ON h.shard = l.shard AND h.epoch = l.epoch
			WHERE l.owner = $1 AND l.expires_at > clock_timestamp() ORDER BY l.shard FOR SHARE OF l),
		del AS (DELETE FROM outbox o USING unnest($4::bigint[], $5::smallint[]) AS a(id, shard)
			WHERE o.id = a.id AND o.shard = a.shard AND a.shard IN (SELECT shard FROM held) RETURNING 1)%[1]s
		SELECT (SELECT count(*) FROM del), %[2]s, ARRAY(SELECT shard FROM held)::smallint[],
			(SELECT v FROM async), pg_current_xact_id()::text::bigint`

// moveSQL is finishSQL's dead-letter part: rows $6 with their failures
// ($7 reasons, $8 errors, $9 attempts, $10 first and $11 last failure).
const moveSQL = `,
		gone AS (DELETE FROM outbox o
			USING unnest($6::bigint[], $7::text[], $8::text[], $9::int[], $10::timestamptz[], $11::timestamptz[])
				AS f(id, reason, error, attempts, first_failed_at, last_failed_at)
			WHERE o.id = f.id AND o.shard IN (SELECT shard FROM held)
			RETURNING o.*, f.reason, f.error, f.attempts, f.first_failed_at, f.last_failed_at),
		moved AS (INSERT INTO outbox_dead_letters (id, shard, aggregate_type, aggregate_id, global_position, event_id,
				event_type, schema_version, version, payload, metadata, occurred_at, recorded_at, created_at,
				reason, error, attempts, first_failed_at, last_failed_at, relay_id)
			SELECT id, shard, aggregate_type, aggregate_id, global_position, event_id,
				event_type, schema_version, version, payload, metadata, occurred_at, recorded_at, created_at,
				reason, error, attempts, first_failed_at, last_failed_at, $1 FROM gone
			ON CONFLICT (id) DO NOTHING RETURNING 1) -- a dead letter with the row's id is that row already
`

var (
	finishPlain = fmt.Sprintf(finishSQL, "", "0::bigint")
	finishMove  = fmt.Sprintf(finishSQL, moveSQL, "(SELECT count(*) FROM moved)")
)

// finish deletes the acked rows and moves the rows dead to
// outbox_dead_letters (finishSQL), fenced by the leases of the shards
// those rows belong to.
func (s *store) finish(ctx context.Context, acked []*row, dead []deadLetter, leases map[int16]int64) (finished, error) {
	ids, idShards := make([]int64, len(acked)), make([]int16, len(acked))
	mine := map[int16]int64{}
	for i, r := range acked {
		ids[i], idShards[i] = r.ID, r.Shard
		mine[r.Shard] = leases[r.Shard]
	}
	q, args := finishPlain, []any{s.id, nil, nil, ids, idShards}
	if len(dead) > 0 {
		dIDs, reasons, msgs := make([]int64, len(dead)), make([]string, len(dead)), make([]string, len(dead))
		attempts, firsts, lasts := make([]int32, len(dead)), make([]time.Time, len(dead)), make([]time.Time, len(dead))
		for i, d := range dead {
			dIDs[i], reasons[i], msgs[i] = d.row.ID, d.reason, d.err
			attempts[i], firsts[i], lasts[i] = int32(d.attempts), d.first, d.last
			mine[d.row.Shard] = leases[d.row.Shard]
		}
		q, args = finishMove, append(args, dIDs, reasons, msgs, attempts, firsts, lasts)
	}
	args[1], args[2] = split(mine)
	var out finished
	var xid int64
	var heldShards []int16
	err := s.planOnce(ctx, func(c *pgxpool.Conn) error {
		return c.QueryRow(ctx, q, args...).Scan(&out.deleted, &out.moved, &heldShards, nil, &xid)
	})
	if err != nil {
		return finished{}, fmt.Errorf("deleting acked rows: %w", err)
	}
	out.xid = uint64(xid)
	for sh := range mine {
		if !slices.Contains(heldShards, sh) {
			out.lost = append(out.lost, sh)
		}
	}
	return out, nil
}

// outboxStats are the outbox gauges.
type outboxStats struct {
	pending   int64   // rows the relay publishes (held rows excluded)
	oldestAge float64 // seconds since the oldest such row was inserted
	dead      int64   // rows in outbox_dead_letters
	held      int64   // outbox rows held behind dead letters
	discarded int64   // rows in outbox_discarded
}

// heldCountSQL counts the held rows from the dead letters' side: per
// dead-lettered aggregate, the rows of its shard above its first dead
// letter (an index range of outbox_shard_id_idx), rather than an
// anti-join over the whole outbox.
const heldCountSQL = `SELECT COALESCE(sum((SELECT count(*) FROM outbox o
		WHERE o.shard = d.shard AND o.id > d.id AND o.aggregate_id = d.aggregate_id AND o.aggregate_type = d.aggregate_type)), 0)::bigint
	FROM (SELECT DISTINCT ON (aggregate_type, aggregate_id) shard, aggregate_type, aggregate_id, id
		FROM outbox_dead_letters ORDER BY aggregate_type, aggregate_id, id) d`

// stats returns the outbox gauges. The outbox size is the planner's
// estimate when above 100k rows, an exact count otherwise; the oldest
// row is the lowest id (ids and created_at are both taken at insert).
// Held rows are counted (and skipped for the oldest row) only while there
// are dead letters: they wait for an operator, not for the relay.
func (s *store) stats(ctx context.Context) (outboxStats, error) {
	var st outboxStats
	var total int64
	err := s.pool.QueryRow(ctx, `WITH d AS MATERIALIZED (SELECT count(*) AS n FROM outbox_dead_letters)
		SELECT
			CASE WHEN c.reltuples > 100000 THEN c.reltuples::bigint ELSE (SELECT count(*) FROM outbox) END,
			d.n,
			CASE WHEN d.n = 0 THEN 0 ELSE (`+heldCountSQL+`) END,
			COALESCE(EXTRACT(EPOCH FROM clock_timestamp() - CASE WHEN d.n = 0
				THEN (SELECT created_at FROM outbox ORDER BY id LIMIT 1)
				ELSE (SELECT created_at FROM outbox o WHERE NOT `+outbox.HeldSQL+` ORDER BY id LIMIT 1) END), 0)::float8,
			(SELECT count(*) FROM outbox_discarded)
		FROM pg_class c, d WHERE c.oid = 'outbox'::regclass`).Scan(&total, &st.dead, &st.held, &st.oldestAge, &st.discarded)
	if err != nil {
		return outboxStats{}, fmt.Errorf("reading outbox stats: %w", err)
	}
	st.pending = max(total-st.held, 0)
	return st, nil
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
