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
// an identity sequence, allocated in time order. An appending transaction
// has its transaction id before it allocates an outbox id (it locked the
// aggregate's head row and inserted the events first). So a row with an id
// below the highest id a claim read, which that claim did not see, belongs
// to a transaction still running at the claim's snapshot: its xid is below
// the snapshot's xmax. Once a later claim's snapshot has xmin >= that xmax,
// every such transaction has ended and that claim sees all their rows. So
// after claim k (rows up to id hi_k, snapshot xmax_k) and a later claim j
// with xmin_j >= xmax_k, and every row claim j read published and deleted,
// the mark moves to hi_k (to hi_j if claim j was a full batch and stopped
// below hi_k, since rows above hi_j were not read).
//
// A long-running writing transaction holds the mark back (claims read from
// the older mark, as slow as without one, never wrong). A row inserted out
// of that protocol (an xid taken after its id) could land below the mark:
// every rescanInterval the mark drops to 0 for one claim, so such a row is
// still published, late, and counted as a straggler.
type lowWater struct {
	shards  []int16 // the shard set the mark is for, sorted
	floor   int64
	pending []claimMark
	// rescanAt is when the mark next drops to 0 for one claim; prev is
	// the mark it dropped from (0 when not rescanning).
	rescanAt time.Time
	prev     int64
}

// claimMark is a claim whose rows were all published and deleted, not yet
// known to be complete: rows below hi invisible to it may still commit.
type claimMark struct {
	hi   int64  // highest id the claim read
	xmax uint64 // its snapshot's xmax
}

// snapshot bounds of a claim's statement snapshot (pg_current_snapshot).
type snapshot struct{ xmin, xmax uint64 }

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

// done records a claim whose rows (ids ascending, highest hi) were all
// published and deleted; full says it returned a whole batch. It moves the
// mark over every earlier claim this claim's snapshot proves complete.
func (lw *lowWater) done(hi int64, full bool, snap snapshot) {
	lw.pending = append(lw.pending, claimMark{hi: hi, xmax: snap.xmax})
	limit := int64(-1)
	if full {
		limit = hi // rows above hi were not read
	}
	lw.settle(snap, limit)
}

// empty records a claim that found no row above the mark.
func (lw *lowWater) empty(snap snapshot) { lw.settle(snap, -1) }

// settle moves the mark to the highest claim that snap proves complete
// (every transaction below its xmax ended before snap), but not above
// limit (when >= 0).
func (lw *lowWater) settle(snap snapshot, limit int64) {
	to := lw.floor
	kept := lw.pending[:0]
	for _, m := range lw.pending {
		if m.xmax <= snap.xmin {
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

// failed forgets the pending claims after a batch left rows in the outbox:
// the mark stays below them (the batch read only ids above it).
func (lw *lowWater) failed() { lw.pending = nil }
