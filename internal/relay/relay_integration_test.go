//go:build integration

package relay

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/sync/errgroup"

	"cqrsflow/internal/outbox"
	"cqrsflow/internal/testenv"
)

// Transaction A appends and stays open, B appends a later outbox id and
// commits, the relay publishes B; then A commits: A is published too
// (no cursor skipped it).
func TestOutOfOrderCommitIsPublished(t *testing.T) {
	e := newEnv(t, testenv.KafkaBrokers())
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	aggs := newAggregates(2)

	txA, err := e.pg.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer txA.Rollback(ctx)
	if _, err := appendTx(ctx, txA, aggs[0].typ, aggs[0].id); err != nil {
		t.Fatal(err)
	}
	var idA int64
	if err := txA.QueryRow(ctx, `SELECT max(id) FROM outbox`).Scan(&idA); err != nil {
		t.Fatal(err)
	}
	if _, err := appendEvent(ctx, e.pg.Pool, aggs[1].typ, aggs[1].id); err != nil {
		t.Fatal(err)
	}
	var idB int64
	if err := e.pg.Pool.QueryRow(ctx, `SELECT max(id) FROM outbox`).Scan(&idB); err != nil {
		t.Fatal(err)
	}
	if idB <= idA {
		t.Fatalf("setup: B's outbox id %d is not after A's %d", idB, idA)
	}

	// One worker serves every shard, so A's row is below the ids this
	// worker publishes and its low-water mark must not pass A's id.
	startRelay(t, e, "r1", func(c *Config) { c.Workers = 1 }, 0)
	waitFor(t, "B published and deleted", 30*time.Second, func() bool { return outboxCount(ctx, t, e.pg.Pool) == 0 })
	// More committed rows while A is open: each claim that finds them
	// moves the mark only over claims whose transactions all ended.
	c := newAggregates(1)[0]
	for range 3 {
		if _, err := appendEvent(ctx, e.pg.Pool, c.typ, c.id); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "C published and deleted", 30*time.Second, func() bool { return outboxCount(ctx, t, e.pg.Pool) == 0 })
	}
	// Let the relay run a few more polls with A still open.
	time.Sleep(500 * time.Millisecond)
	if err := txA.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "A published and deleted", 30*time.Second, func() bool { return outboxCount(ctx, t, e.pg.Pool) == 0 })
	recs := consumeAll(t, e.brokers, e.topics, 5, 30*time.Second)
	checkStream(t, recs, map[string]int64{aggs[0].id: 1, aggs[1].id: 1, c.id: 3})
}

// The CI failure this guards against: transaction A takes its xid after
// transaction H, allocates a lower outbox id than H, and is still open
// when H commits. A claim then sees H's row, and A's xid is above that
// claim's snapshot xmax (latest completed + 1), so neither its xmax nor a
// later xmin (which ignores xids above xmax) tells that A is running. The
// mark must still not pass A's id: it waits for xmin to pass the xid of
// the batch's delete, taken after the claim.
func TestMarkWaitsForTransactionWithNewerXidAndLowerID(t *testing.T) {
	e := newEnv(t, testenv.KafkaBrokers())
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	aggs := newAggregates(3)
	txH, err := e.pg.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer txH.Rollback(ctx)
	var xidH int64
	if err := txH.QueryRow(ctx, `SELECT pg_current_xact_id()::text::bigint`).Scan(&xidH); err != nil {
		t.Fatal(err)
	}
	txA, err := e.pg.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer txA.Rollback(ctx)
	if _, err := appendTx(ctx, txA, aggs[0].typ, aggs[0].id); err != nil {
		t.Fatal(err)
	}
	var xidA, idA int64
	if err := txA.QueryRow(ctx, `SELECT pg_current_xact_id()::text::bigint, max(id) FROM outbox`).Scan(&xidA, &idA); err != nil {
		t.Fatal(err)
	}
	if _, err := appendTx(ctx, txH, aggs[1].typ, aggs[1].id); err != nil {
		t.Fatal(err)
	}
	var idH int64
	if err := txH.QueryRow(ctx, `SELECT max(id) FROM outbox`).Scan(&idH); err != nil {
		t.Fatal(err)
	}
	if xidA <= xidH || idA >= idH {
		t.Fatalf("setup: want xid A %d > xid H %d and id A %d < id H %d", xidA, xidH, idA, idH)
	}
	if err := txH.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	startRelay(t, e, "xid-order", func(c *Config) { c.Workers, c.RescanInterval = 1, time.Hour }, 0)
	waitFor(t, "H published and deleted", 30*time.Second, func() bool { return outboxCount(ctx, t, e.pg.Pool) == 0 })
	// Later claims find more rows while A is open, then nothing.
	if _, err := appendEvent(ctx, e.pg.Pool, aggs[2].typ, aggs[2].id); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "C published and deleted", 30*time.Second, func() bool { return outboxCount(ctx, t, e.pg.Pool) == 0 })
	time.Sleep(500 * time.Millisecond)
	if err := txA.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "A published and deleted (not left below the mark)", 15*time.Second, func() bool { return outboxCount(ctx, t, e.pg.Pool) == 0 })
	recs := consumeAll(t, e.brokers, e.topics, 3, 30*time.Second)
	checkStream(t, recs, map[string]int64{aggs[0].id: 1, aggs[1].id: 1, aggs[2].id: 1})
}

// Rows that come back below the mark after a crash (an asynchronous
// delete lost) or a failover are republished at once, not at the next
// rescan: the mark is dropped when the server's incarnation changes.
// Resetting the shared bgwriter statistics changes it the way crash
// recovery does (PostgreSQL resets them after a crash).
func TestMarkDroppedWhenServerIncarnationChanges(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	e, rr, a := rowBelowMark(ctx, t, "incarnation", time.Hour, 3) // as after a lost delete
	time.Sleep(time.Second)
	if n := outboxCount(ctx, t, e.pg.Pool); n != 1 {
		t.Fatalf("setup: %d outbox rows, want the row below the mark still there (the mark is working)", n)
	}
	if _, err := e.pg.Pool.Exec(ctx, `SELECT pg_stat_reset_shared('bgwriter')`); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the row below the mark republished after the incarnation changed", 15*time.Second, func() bool { return outboxCount(ctx, t, e.pg.Pool) == 0 })
	if n := testutil.ToFloat64(rr.m.stragglers); n != 0 {
		t.Fatalf("cqrsflow_relay_late_rows_total = %v, want 0 (not a rescan)", n)
	}
	checkFirstTwice(t, e, a, 3)
}

// A row inserted below a worker's low-water mark (here with an explicit
// old id, as an out-of-protocol writer could) is published by the
// periodic rescan and counted.
func TestRescanPublishesRowBelowTheMark(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	e, rr, a := rowBelowMark(ctx, t, "rescan", 2*time.Second, 5) // as an out-of-protocol writer could
	waitFor(t, "the row below the mark published by a rescan", 30*time.Second, func() bool { return outboxCount(ctx, t, e.pg.Pool) == 0 })
	if n := testutil.ToFloat64(rr.m.stragglers); n != 1 {
		t.Fatalf("cqrsflow_relay_late_rows_total = %v, want 1", n)
	}
	checkFirstTwice(t, e, a, 5)
}

// Two relays share the shards; 20 000 events over 500 aggregates are
// written concurrently while both run.
func TestTwoRelaysConcurrentWriters(t *testing.T) {
	e := newEnv(t, testenv.KafkaBrokers())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	r1 := startRelay(t, e, "r1", nil, 0)
	r2 := startRelay(t, e, "r2", nil, 0)
	aggs := newAggregates(500)

	var maxOwned1, maxOwned2, bothOwned bool
	stopWatch := make(chan struct{})
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		for {
			select {
			case <-stopWatch:
				return
			case <-time.After(100 * time.Millisecond):
			}
			a, b := len(r1.Owned()), len(r2.Owned())
			if a > 0 && b > 0 {
				bothOwned = true
			}
			if a > 32 && b > 0 {
				maxOwned1 = true
			}
			if b > 32 && a > 0 {
				maxOwned2 = true
			}
		}
	}()
	want := writeConcurrently(ctx, t, e.pg.Pool, aggs, 20000, 8, 0)
	if n := total(want); n != 20000 {
		t.Fatalf("wrote %d events", n)
	}
	waitFor(t, "outbox drained", 3*time.Minute, func() bool { return outboxCount(ctx, t, e.pg.Pool) == 0 })
	close(stopWatch)
	<-watchDone

	recs := consumeAll(t, e.brokers, e.topics, 20000, 2*time.Minute)
	dups := checkStream(t, recs, want)
	t.Logf("consumed %d records, %d distinct, %d duplicates; shard split %d/%d", len(recs), len(recs)-dups, dups, len(r1.Owned()), len(r2.Owned()))
	if !bothOwned {
		t.Fatal("the two relays never held shards at the same time")
	}
	if maxOwned1 && maxOwned2 {
		t.Log("both relays were above quota at some point (start-up race), then rebalanced")
	}
	if a, b := len(r1.Owned()), len(r2.Owned()); a+b != outbox.ShardCount || a > 32 || b > 32 {
		t.Fatalf("final split %d/%d, want 32/32", a, b)
	}
	p1 := testutil.ToFloat64(r1.m.published.WithLabelValues(e.topics[0])) + testutil.ToFloat64(r1.m.published.WithLabelValues(e.topics[1]))
	p2 := testutil.ToFloat64(r2.m.published.WithLabelValues(e.topics[0])) + testutil.ToFloat64(r2.m.published.WithLabelValues(e.topics[1]))
	if int(p1+p2) != len(recs) {
		t.Fatalf("cqrsflow_relay_published_total %v+%v != %d records on Kafka", p1, p2, len(recs))
	}
	if p1 == 0 || p2 == 0 {
		t.Fatalf("one relay published nothing: %v / %v", p1, p2)
	}
	if n := testutil.CollectAndCount(r1.reg, "cqrsflow_relay_publish_lag_seconds"); n != 1 {
		t.Fatalf("publish lag histogram missing")
	}
	waitFor(t, "pending gauge 0", 5*time.Second, func() bool { return testutil.ToFloat64(r1.m.pending) == 0 })
}

// A relay whose lease was taken over stops publishing that shard: nothing
// of it is published or deleted, other shards go on.
func TestLeaseLossStopsPublishingShard(t *testing.T) {
	e := newEnv(t, testenv.KafkaBrokers())
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	r := startRelay(t, e, "r1", func(c *Config) { c.LeaseTTL = 30 * time.Second }, 0)
	waitFor(t, "relay owns all shards", 20*time.Second, func() bool { return len(r.Owned()) == outbox.ShardCount })

	aggs := newAggregates(64)
	stolen := shardOf(ctx, t, e.pg.Pool, aggs[0].id)
	// Steal the lease (another relay taking over after its epoch bump).
	if _, err := e.pg.Pool.Exec(ctx, `UPDATE relay_leases SET owner = 'thief', epoch = epoch + 1,
		expires_at = clock_timestamp() + interval '1 hour' WHERE shard = $1`, stolen); err != nil {
		t.Fatal(err)
	}
	want := map[string]int64{}
	var stolenIDs []string
	for _, a := range aggs {
		for range 3 {
			if _, err := appendEvent(ctx, e.pg.Pool, a.typ, a.id); err != nil {
				t.Fatal(err)
			}
		}
		if shardOf(ctx, t, e.pg.Pool, a.id) == stolen {
			stolenIDs = append(stolenIDs, a.id)
		} else {
			want[a.id] = 3
		}
	}
	var stolenRows int64
	waitFor(t, "other shards drained", 30*time.Second, func() bool {
		var other int64
		if err := e.pg.Pool.QueryRow(ctx, `SELECT count(*) FROM outbox WHERE shard <> $1`, stolen).Scan(&other); err != nil {
			t.Fatal(err)
		}
		return other == 0
	})
	time.Sleep(time.Second) // more polls: the stolen shard must stay untouched
	if err := e.pg.Pool.QueryRow(ctx, `SELECT count(*) FROM outbox WHERE shard = $1`, stolen).Scan(&stolenRows); err != nil {
		t.Fatal(err)
	}
	if stolenRows != int64(3*len(stolenIDs)) {
		t.Fatalf("stolen shard: %d rows left in the outbox, want %d", stolenRows, 3*len(stolenIDs))
	}
	recs := consumeAll(t, e.brokers, e.topics, total(want), 30*time.Second)
	for _, rec := range recs {
		for _, id := range stolenIDs {
			if rec.key == id {
				t.Fatalf("event of aggregate %s on the stolen shard %d was published after the takeover", id, stolen)
			}
		}
	}
	checkStream(t, recs, want)
	for _, s := range r.Owned() {
		if s == stolen {
			t.Fatalf("relay still lists shard %d as owned", stolen)
		}
	}
	if got := testutil.ToFloat64(r.m.leasesLost); got < 1 {
		t.Fatalf("cqrsflow_relay_leases_lost_total = %v, want >= 1", got)
	}
}

// The delete after the ack is fenced by the lease epoch: once the lease
// was taken over, the old owner's delete removes nothing of that shard.
func TestDeleteAfterTakeoverDeletesNothing(t *testing.T) {
	pg := testenv.Postgres(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st := &store{pool: pg.Pool, id: "old", ttl: 10 * time.Second}
	got, err := st.acquire(ctx, outbox.ShardCount)
	if err != nil || len(got) != outbox.ShardCount {
		t.Fatalf("acquire: %v, %d shards", err, len(got))
	}
	aggs := newAggregates(20)
	for _, a := range aggs {
		if _, err := appendEvent(ctx, pg.Pool, a.typ, a.id); err != nil {
			t.Fatal(err)
		}
	}
	s0, s1 := shardOf(ctx, t, pg.Pool, aggs[0].id), shardOf(ctx, t, pg.Pool, aggs[1].id)
	c, err := st.claim(ctx, map[int16]int64{s0: got[s0], s1: got[s1]}, 0, 100, nil, false)
	rows := c.rows
	if err != nil || len(rows) < 2 {
		t.Fatalf("claim: %v, %d rows", err, len(rows))
	}
	leases := map[int16]int64{}
	var ids []int64
	var acked []*row
	for i, r := range rows {
		leases[r.Shard] = got[r.Shard]
		ids = append(ids, r.ID)
		acked = append(acked, &rows[i])
	}
	// The new owner takes the first row's shard (expired lease + acquire).
	victim := rows[0].Shard
	if _, err := pg.Pool.Exec(ctx, `UPDATE relay_leases SET expires_at = clock_timestamp() - interval '1 second' WHERE shard = $1`, victim); err != nil {
		t.Fatal(err)
	}
	nw := &store{pool: pg.Pool, id: "new", ttl: 10 * time.Second}
	if taken, err := nw.acquire(ctx, 1); err != nil || taken[victim] != got[victim]+1 {
		t.Fatalf("takeover: %v %v", taken, err)
	}
	out, err := st.finish(ctx, acked, nil, leases)
	if err != nil {
		t.Fatal(err)
	}
	n, lost := out.deleted, out.lost
	if len(lost) != 1 || lost[0] != victim {
		t.Fatalf("lost = %v, want [%d]", lost, victim)
	}
	var left int64
	if err := pg.Pool.QueryRow(ctx, `SELECT count(*) FROM outbox WHERE id = ANY($1) AND shard = $2`, ids, victim).Scan(&left); err != nil {
		t.Fatal(err)
	}
	var victimRows int64
	for _, r := range rows {
		if r.Shard == victim {
			victimRows++
		}
	}
	if left != victimRows || n != int64(len(ids))-victimRows {
		t.Fatalf("deleted %d, left %d of the taken shard; want deleted %d, left %d", n, left, int64(len(ids))-victimRows, victimRows)
	}
	// A concurrent takeover waits for the delete's FOR SHARE lock.
	tx, err := pg.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `SELECT 1 FROM relay_leases WHERE shard = $1 FOR SHARE`, victim); err != nil {
		t.Fatal(err)
	}
	lctx, lcancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer lcancel()
	_, err = pg.Pool.Exec(lctx, `UPDATE relay_leases SET owner = 'x' WHERE shard = $1`, victim)
	if err == nil {
		t.Fatal("a lease update went through while the delete held its FOR SHARE lock")
	}
}

// Kafka (a private broker) is frozen with SIGSTOP for 20 s while writers
// keep appending: nothing is deleted meanwhile, the backlog grows, and
// after SIGCONT everything arrives, in order per key.
func TestKafkaOutageUnderLoad(t *testing.T) {
	broker, pid := privateKafka(t)
	e := newEnv(t, []string{broker})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	r := startRelay(t, e, "r1", func(c *Config) { c.MaxBackoff = time.Second }, 5*time.Second)
	aggs := newAggregates(100)

	written := make(chan map[string]int64, 1)
	go func() { written <- writeConcurrently(ctx, t, e.pg.Pool, aggs, 6000, 2, 10*time.Millisecond) }()
	time.Sleep(3 * time.Second)
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := true
	defer func() {
		if stopped {
			_ = syscall.Kill(pid, syscall.SIGCONT)
		}
	}()
	time.Sleep(2 * time.Second) // in-flight batch settles
	before := outboxCount(ctx, t, e.pg.Pool)
	time.Sleep(18 * time.Second)
	during := outboxCount(ctx, t, e.pg.Pool)
	pendingGauge, ageGauge := testutil.ToFloat64(r.m.pending), testutil.ToFloat64(r.m.oldestAge)
	if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	stopped = false
	t.Logf("outbox while Kafka was stopped: %d → %d rows; publish errors so far %v", before, during,
		testutil.ToFloat64(r.m.errors.WithLabelValues(e.topics[0]))+testutil.ToFloat64(r.m.errors.WithLabelValues(e.topics[1])))
	if pendingGauge < float64(before) || ageGauge < 10 {
		t.Fatalf("during the outage: cqrsflow_outbox_pending_events = %v (outbox had >= %d rows), oldest_pending_age_seconds = %v (want >= 10)", pendingGauge, before, ageGauge)
	}
	if during <= before {
		t.Fatalf("backlog did not grow while Kafka was stopped (%d → %d): rows were deleted without an ack?", before, during)
	}
	want := <-written
	waitFor(t, "outbox drained after Kafka returned", 3*time.Minute, func() bool { return outboxCount(ctx, t, e.pg.Pool) == 0 })
	recs := consumeAll(t, e.brokers, e.topics, total(want), 2*time.Minute)
	dups := checkStream(t, recs, want)
	t.Logf("consumed %d records, %d duplicates", len(recs), dups)
}

// Renewals (which lock every owned lease row) race deletes (which lock
// the lease rows of their batch FOR SHARE, handed over in random map
// order) and releases: all lock in shard order, so none deadlocks. Before
// the ordered locking this failed within a few hundred rounds with
// SQLSTATE 40P01.
func TestLeaseLockingNeverDeadlocks(t *testing.T) {
	pg := testenv.Postgres(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	st := &store{pool: pg.Pool, id: "r", ttl: time.Minute}
	leases, err := st.acquire(ctx, outbox.ShardCount)
	if err != nil || len(leases) != outbox.ShardCount {
		t.Fatalf("acquire: %v, %d shards", err, len(leases))
	}
	const rounds = 300
	var g errgroup.Group
	g.Go(func() error {
		for i := 0; i < rounds; i++ {
			if _, err := st.renew(ctx); err != nil {
				return fmt.Errorf("renew round %d: %w", i, err)
			}
		}
		return nil
	})
	for w := 0; w < 3; w++ {
		g.Go(func() error {
			for i := 0; i < rounds; i++ {
				// A subset of shards in map (random) order, like one batch.
				sub := map[int16]int64{}
				var acked []*row
				for s, e := range leases {
					if len(sub) == 24 {
						break
					}
					sub[s] = e
					acked = append(acked, &row{ID: int64(i), Shard: s})
				}
				if out, err := st.finish(ctx, acked, nil, sub); err != nil || len(out.lost) != 0 {
					return fmt.Errorf("delete round %d: lost %v, %w", i, out.lost, err)
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	// release locks in the same order and still hands everything back.
	if err := st.release(ctx, leases); err != nil {
		t.Fatal(err)
	}
	if left, err := st.renew(ctx); err != nil || len(left) != 0 {
		t.Fatalf("after release: %d leases still owned, %v", len(left), err)
	}
}

// With a linger, the NOTIFYs of writes close together wake one claim:
// 20 writes committed in 5 transactions over ~0.2s leave in one batch,
// published no sooner than the linger after the first commit; without
// it each append is claimed on its own.
//
// The writes' appends are done before the first commit, in transactions
// left open, so that only their commits fall into the linger window: a
// loaded machine makes appends slow, and a write committed after the
// window rightly goes to a later batch. The commits' actual span is
// measured; a round whose commits spanned the linger proves nothing and
// is run again (at most three rounds).
func TestLingerBatchesNotifiedWrites(t *testing.T) {
	const linger = 500 * time.Millisecond
	t.Run("linger", func(t *testing.T) {
		for round := 1; ; round++ {
			span, batches, took := lingerRound(t, linger, func(ctx context.Context, e *itEnv) (time.Time, time.Time) {
				return commitSpread(ctx, t, e, 5, 4, linger/10)
			})
			if span >= linger {
				if round < 3 {
					t.Logf("round %d: the commits spanned %s, not within the linger; again", round, span)
					continue
				}
				t.Fatalf("in %d rounds the 5 commits never fell within %s (last span %s): the machine is too slow for this test", round, linger, span)
			}
			t.Logf("linger %s: commits within %s, %v batches, drained %s after the first commit", linger, span.Round(time.Millisecond), batches, took)
			// NOTIFY is database-wide: a write of a test running beside
			// this one can wake the relay just before the first commit, so
			// its linger ends early. That only ever shortens the drain; a
			// relay that does not linger also splits the commits.
			if batches == 1 && took < linger && round < 3 {
				t.Logf("round %d: drained %s after the first commit, before the linger: another writer woke the relay first; again", round, took)
				continue
			}
			if batches != 1 || took < linger {
				t.Fatalf("linger %s: %v batches (want 1), drained %s after the first commit (want >= the linger)", linger, batches, took)
			}
			return
		}
	})
	t.Run("no linger", func(t *testing.T) {
		_, batches, took := lingerRound(t, 0, func(ctx context.Context, e *itEnv) (time.Time, time.Time) {
			first := time.Now()
			for range 20 {
				if _, err := appendEvent(ctx, e.pg.Pool, "product", "lingering"); err != nil {
					t.Fatal(err)
				}
			}
			return first, time.Now()
		})
		t.Logf("no linger: %v batches, drained %s after the first write", batches, took)
		if batches < 2 {
			t.Fatalf("no linger: %v batches, want one claim per wake (several)", batches)
		}
	})
}

// lingerRound starts a relay with the given linger (and no poll) and
// waits until it is idle: listening, holding every lease, and every
// publish loop waiting for a wake-up with none pending (the wake-ups of
// the start are over, and nothing else wakes the relay). It then runs
// write (which returns when its first commit started and its last one
// returned) and waits until the writes are published. It returns the
// commits' span, the batches they took and the time from the first
// commit to the outbox being empty.
func lingerRound(t *testing.T, linger time.Duration, write func(context.Context, *itEnv) (time.Time, time.Time)) (time.Duration, float64, time.Duration) {
	e := newEnv(t, testenv.KafkaBrokers())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rr := startRelay(t, e, "linger", func(c *Config) { c.Linger, c.PollInterval = linger, time.Hour }, 0)
	defer rr.stop()
	idle := func() bool {
		for w := range rr.wake {
			if !rr.waiting[w].Load() || len(rr.wake[w]) > 0 {
				return false
			}
		}
		return rr.listening.Load() && len(rr.Owned()) == outbox.ShardCount
	}
	// Twice, apart: a loop that just took a wake-up is not yet marked busy.
	waitFor(t, "the relay idle", 20*time.Second, func() bool {
		if !idle() {
			return false
		}
		time.Sleep(20 * time.Millisecond)
		return idle()
	})
	before := testutil.ToFloat64(rr.m.batches)
	first, last := write(ctx, e)
	waitFor(t, "published", 10*time.Second, func() bool { return outboxCount(ctx, t, e.pg.Pool) == 0 })
	return last.Sub(first), testutil.ToFloat64(rr.m.batches) - before, time.Since(first)
}

// commitSpread writes n*each events of distinct aggregates in n
// transactions, each on its own connection: all appends first, the
// transactions left open, then the commits gap apart. It returns when
// the first commit started and when the last one returned.
func commitSpread(ctx context.Context, t *testing.T, e *itEnv, n, each int, gap time.Duration) (first, last time.Time) {
	t.Helper()
	txs := make([]pgx.Tx, n)
	for i := range txs {
		conn, err := pgx.ConnectConfig(ctx, e.pg.Pool.Config().ConnConfig.Copy())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close(context.Background()) })
		if txs[i], err = conn.Begin(ctx); err != nil {
			t.Fatal(err)
		}
		for _, a := range newAggregates(each) {
			if _, err := appendTx(ctx, txs[i], a.typ, a.id); err != nil {
				t.Fatal(err)
			}
		}
	}
	first = time.Now()
	for i, tx := range txs {
		if i > 0 {
			time.Sleep(gap)
		}
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
	}
	return first, time.Now()
}

// rowBelowMark starts a one-worker relay (RescanInterval rescan), appends
// and publishes n events of one aggregate, waits until the worker's
// low-water mark left 0, then puts the outbox row of the aggregate's first
// event back under id 1, below every id published.
func rowBelowMark(ctx context.Context, t *testing.T, id string, rescan time.Duration, n int) (*itEnv, *runningRelay, aggregate) {
	t.Helper()
	e := newEnv(t, testenv.KafkaBrokers())
	rr := startRelay(t, e, id, func(c *Config) { c.Workers, c.RescanInterval = 1, rescan }, 0)
	a := newAggregates(1)[0]
	for range n {
		if _, err := appendEvent(ctx, e.pg.Pool, a.typ, a.id); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "published and deleted", 30*time.Second, func() bool { return outboxCount(ctx, t, e.pg.Pool) == 0 })
	}
	waitForMark(t, rr)
	if _, err := e.pg.Pool.Exec(ctx, `INSERT INTO outbox (id, `+outbox.Columns+`) OVERRIDING SYSTEM VALUE
		SELECT 1, `+outbox.FromEvents+` FROM events ev
		WHERE ev.global_position = (SELECT min(global_position) FROM events WHERE aggregate_id = $1)`, a.id); err != nil {
		t.Fatal(err)
	}
	return e, rr, a
}

// checkFirstTwice checks that Kafka holds a's n events in order, the
// first one twice (republished from below the mark).
func checkFirstTwice(t *testing.T, e *itEnv, a aggregate, n int) {
	t.Helper()
	recs := consumeAll(t, e.brokers, e.topics, n, 30*time.Second)
	if len(recs) != n+1 {
		t.Fatalf("%d records, want %d (%d events, the first one twice)", len(recs), n+1, n)
	}
	checkStream(t, recs, map[string]int64{a.id: int64(n)})
}

// waitForMark waits until worker 0's low-water mark left 0 (it settles
// once no transaction that was running at a drained claim still runs,
// which other test packages' transactions can delay).
func waitForMark(t *testing.T, rr *runningRelay) {
	t.Helper()
	waitFor(t, "the low-water mark above 0", 30*time.Second, func() bool {
		return testutil.ToFloat64(rr.m.lowWater.WithLabelValues("0")) > 0
	})
}
