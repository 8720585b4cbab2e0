package relay

import (
	"slices"
	"time"
)

// lowWater is one publish worker's low-water mark: an outbox id at or
// below which no row of the worker's shards is pending or can still
// appear. The claim reads only rows above it, so it starts at the live
// rows instead of walking the index entries of every row deleted since the
// last VACUUM: on a drained 45 000 rows, a claim from the start of the
// table took 39 ms against 5 ms on the fresh table, growing with every
// batch deleted.
//
// Why a row at or below the mark cannot appear later. Outbox ids come from
// an identity sequence (CACHE 1), allocated in time order. An appending
// transaction has its transaction id before it allocates an outbox id (it
// locked the aggregate's head row and inserted the events first). Take a
// claim k whose highest id is hi_k. A row below hi_k that claim k did not
// see had its id allocated before hi_k's, so before claim k's snapshot,
// by a transaction that already had an xid then. After claim k's rows are
// published, the delete of batch k runs in a transaction whose xid D_k is
// assigned after that snapshot, so every such transaction has an xid below
// D_k. A snapshot's xmin is its lowest running xid below its xmax, and its
// xmax (latest completed xid + 1) is above D_k once batch k's delete has
// committed; so a later claim j whose snapshot has xmin > D_k sees every
// row below hi_k. (A snapshot's own xmax would not do: a transaction that
// took its xid after the latest completed one is above xmax and neither
// in the snapshot's running list nor in its xmin.) When all rows claim j
// read are published and deleted, the mark moves to hi_k (to hi_j if
// claim j was a full batch and stopped below hi_k, since rows above hi_j
// were not read).
//
// A long-running writing transaction holds the mark back (claims read from
// the older mark, as slow as without one, never wrong). A row inserted out
// of that protocol (an xid taken after its id) could land below the mark:
// every rescanInterval the mark drops to 0 for one claim, so such a row is
// still published, late, and counted as a straggler.
//
// Dead letters. Claims skip the rows held behind a dead letter of their
// aggregate (and the rows behind a worker's suspects, see poison), so the
// mark may pass held rows: they are not pending for the relay while the
// dead letter is there. They become claimable, together with a retried
// dead letter put back under its old id (below the mark too), only when
// the dead letter leaves outbox_dead_letters. Any such DELETE bumps the
// redrive generation in the same transaction (a trigger), and every claim
// reads the generation in its snapshot: a claim that sees the new
// generation sees the released rows, and the worker then drops its mark
// as for a new server incarnation and claims again from 0, at once, not
// at the next rescan. A claim that still sees the old generation does
// not see the release either. Rows behind a suspect are skipped only
// while the suspect row itself is in the outbox below them, and a batch
// that skipped any does not move the mark (finishAndAdvance).
type lowWater struct {
	server  string  // snapshot.server the mark was set under
	redrive int64   // snapshot.redrive the mark was set under
	shards  []int16 // the shard set the mark is for, sorted
	floor   int64
	pending []claimMark
	// rescanAt is when the mark next drops to 0 for one claim; prev is
	// the mark it dropped from (0 when not rescanning).
	rescanAt time.Time
	prev     int64
}

// maxPendingMarks bounds the claims a worker remembers while a long
// transaction keeps them from settling.
const maxPendingMarks = 1024

// claimMark is a claim whose rows were all published and deleted, not yet
// known to be complete: rows below hi invisible to it may still commit.
type claimMark struct {
	hi    int64  // highest id the claim read
	bound uint64 // xid of the batch's delete: complete once xmin > bound
}

// snapshot is what lowWater needs of a claim: its statement snapshot's
// xmin (pg_current_snapshot), and the server's incarnation, made of
//   - the postmaster start (a clean restart),
//   - the reset time of the shared bgwriter statistics, which PostgreSQL
//     resets after crash recovery (checked on PostgreSQL 15: a backend
//     killed with SIGKILL, the server reinitialised and recovered, the
//     reset time changed and the postmaster start did not),
//   - the current WAL timeline (a promotion starts a new one).
//
// Neither the mark nor its pending claims are used across a change: a
// lost asynchronous delete brings rows back below the mark, a promoted
// replica's sequence may be behind it, and xids may be reissued. The
// same holds across a change of the redrive generation (rows released
// from behind dead letters, see lowWater).
type snapshot struct {
	xmin    uint64
	server  string
	redrive int64
}

// sameOrigin reports whether snap has the server incarnation and the
// redrive generation the mark was set under, and remembers them.
func (lw *lowWater) sameOrigin(snap snapshot) bool {
	same := lw.server == snap.server && lw.redrive == snap.redrive
	lw.server, lw.redrive = snap.server, snap.redrive
	return same
}

// from returns the id a claim of shards starts after. A different shard
// set starts over at 0 (a newly owned shard may have any rows), as does
// the periodic rescan.
func (lw *lowWater) from(shards []int16, now time.Time, rescanInterval time.Duration) int64 {
	sorted := slices.Clone(shards)
	slices.Sort(sorted)
	lw.prev = 0
	switch {
	case !slices.Equal(sorted, lw.shards):
		lw.shards, lw.floor, lw.pending = sorted, 0, nil
		lw.rescanAt = now.Add(rescanInterval)
	case rescanInterval > 0 && !now.Before(lw.rescanAt):
		lw.prev, lw.floor, lw.pending = lw.floor, 0, nil
		lw.rescanAt = now.Add(rescanInterval)
	}
	return lw.floor
}

// stragglers counts the claimed ids at or below the mark a rescan dropped
// from: rows that appeared below the mark (see lowWater).
func (lw *lowWater) stragglers(ids []int64) int {
	n := 0
	for _, id := range ids {
		if id <= lw.prev {
			n++
		}
	}
	return n
}

// done records a claim (snapshot snap) whose rows (ids ascending, highest
// hi) were all published and then deleted by transaction delXID; full says
// it returned a whole batch. It moves the mark over every earlier claim
// this claim's snapshot proves complete.
func (lw *lowWater) done(hi int64, full bool, delXID uint64, snap snapshot) {
	// Marks are in claim order, so bounds only grow. Past maxPendingMarks
	// (a long-running writer holds every mark back) the new claim absorbs
	// the last mark, which then settles later, never earlier.
	if n := len(lw.pending); n >= maxPendingMarks {
		lw.pending[n-1] = claimMark{hi: max(hi, lw.pending[n-1].hi), bound: delXID}
	} else {
		lw.pending = append(lw.pending, claimMark{hi: hi, bound: delXID})
	}
	limit := int64(-1)
	if full {
		limit = hi // rows above hi were not read
	}
	lw.settle(snap, limit)
}

// empty records a claim that found no row above the mark. An empty
// rescan puts the mark back where it was: nothing appeared below it.
func (lw *lowWater) empty(snap snapshot) {
	lw.floor = max(lw.floor, lw.prev)
	lw.settle(snap, -1)
}

// settle moves the mark to the highest claim that snap proves complete
// (no transaction with an xid below its bound was running at snap), but
// not above limit (when >= 0).
func (lw *lowWater) settle(snap snapshot, limit int64) {
	to := lw.floor
	kept := lw.pending[:0]
	for _, m := range lw.pending {
		if m.bound < snap.xmin {
			to = max(to, m.hi)
			continue
		}
		kept = append(kept, m)
	}
	lw.pending = kept
	if limit >= 0 {
		to = min(to, limit)
	}
	lw.floor = max(lw.floor, to)
}

// reset starts over at 0 with the next claim (rows below the mark were
// left in the outbox, or released from behind dead letters).
func (lw *lowWater) reset() { *lw = lowWater{server: lw.server, redrive: lw.redrive} }

// failed forgets the pending claims after a batch left rows in the outbox:
// the mark stays below them (the batch read only ids above it).
func (lw *lowWater) failed() { lw.pending = nil }
