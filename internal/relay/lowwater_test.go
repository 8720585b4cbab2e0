package relay

import (
	"testing"
	"time"
)

func TestLowWaterWaitsForTransactionsRunningAtTheClaim(t *testing.T) {
	now := time.Unix(0, 0)
	var lw lowWater
	shards := []int16{3, 1}
	if f := lw.from(shards, now, time.Hour); f != 0 {
		t.Fatalf("first claim from %d, want 0", f)
	}
	// Claim 1 read ids up to 100 (snapshot xmin 50: xid 50 was running);
	// its batch was deleted by xid 60.
	lw.done(100, false, 60, snapshot{xmin: 50})
	if lw.floor != 0 {
		t.Fatalf("mark %d after a claim with a running transaction, want 0", lw.floor)
	}
	// Claim 2 (ids up to 130, deleted by xid 70): a transaction below 60
	// still runs (xmin 55), so claim 1 is not complete.
	lw.done(130, false, 70, snapshot{xmin: 55})
	if lw.floor != 0 {
		t.Fatalf("mark %d while xid 55 still runs, want 0", lw.floor)
	}
	// xmin equal to a bound cannot occur (the delete has ended and xmin
	// is a running xid); the rule is strict anyway.
	lw.empty(snapshot{xmin: 60})
	if lw.floor != 0 {
		t.Fatalf("mark %d with xmin == bound, want 0", lw.floor)
	}
	// Claim 3 found nothing; everything below 65 ended: claim 1 is
	// complete, claim 2 (bound 70) is not.
	lw.empty(snapshot{xmin: 65})
	if lw.floor != 100 {
		t.Fatalf("mark %d, want 100 (claim 1 complete)", lw.floor)
	}
	if got := lw.from([]int16{1, 3}, now, time.Hour); got != 100 {
		t.Fatalf("same shards in another order: from %d, want 100", got)
	}
	// Claim 4 is a full batch up to 120 and nothing below 80 runs: claim 2
	// (up to 130) is complete, but rows above 120 were not read.
	lw.done(120, true, 85, snapshot{xmin: 80})
	if lw.floor != 120 {
		t.Fatalf("mark %d after a full batch up to 120, want 120", lw.floor)
	}
	if len(lw.pending) != 1 || lw.pending[0].bound != 85 {
		t.Fatalf("pending %v, want claim 4's mark only", lw.pending)
	}
	// The mark never goes back.
	lw.done(125, true, 95, snapshot{xmin: 90})
	lw.empty(snapshot{xmin: 100})
	if lw.floor != 125 {
		t.Fatalf("mark %d, want 125", lw.floor)
	}
}

func TestLowWaterFailureAndShardChangesKeepItBelowPendingRows(t *testing.T) {
	now := time.Unix(0, 0)
	var lw lowWater
	lw.from([]int16{1}, now, time.Hour)
	lw.done(10, false, 5, snapshot{xmin: 4})
	lw.empty(snapshot{xmin: 6})
	if lw.floor != 10 {
		t.Fatalf("mark %d, want 10", lw.floor)
	}
	// A batch above 10 left rows behind: its claim and the older pending
	// ones are forgotten, the mark stays.
	lw.done(20, false, 9, snapshot{xmin: 7})
	lw.failed()
	lw.empty(snapshot{xmin: 100})
	if lw.floor != 10 {
		t.Fatalf("mark %d after a failed batch, want 10", lw.floor)
	}
	// A new shard set starts from 0.
	if f := lw.from([]int16{1, 2}, now, time.Hour); f != 0 {
		t.Fatalf("new shard set from %d, want 0", f)
	}
}

func TestLowWaterRescanCountsStragglers(t *testing.T) {
	start := time.Unix(0, 0)
	var lw lowWater
	lw.from([]int16{7}, start, time.Minute)
	lw.done(500, false, 9, snapshot{xmin: 8})
	lw.empty(snapshot{xmin: 10})
	if f := lw.from([]int16{7}, start.Add(59*time.Second), time.Minute); f != 500 {
		t.Fatalf("before the rescan: from %d, want 500", f)
	}
	if n := lw.stragglers([]int64{501}); n != 0 {
		t.Fatalf("%d stragglers outside a rescan", n)
	}
	if f := lw.from([]int16{7}, start.Add(time.Minute), time.Minute); f != 0 {
		t.Fatalf("rescan: from %d, want 0", f)
	}
	if n := lw.stragglers([]int64{42, 500, 501}); n != 2 {
		t.Fatalf("stragglers = %d, want 2 (ids 42 and 500 are at or below the mark 500)", n)
	}
	// The next claims are back to normal and the rescan is a minute away.
	lw.done(501, false, 11, snapshot{xmin: 10})
	lw.empty(snapshot{xmin: 12})
	if f := lw.from([]int16{7}, start.Add(61*time.Second), time.Minute); f != 501 {
		t.Fatalf("after the rescan: from %d, want 501", f)
	}
	if n := lw.stragglers([]int64{42}); n != 0 {
		t.Fatalf("%d stragglers outside a rescan", n)
	}
}

func TestLowWaterResetStartsOverForTheSameShards(t *testing.T) {
	now := time.Unix(0, 0)
	var lw lowWater
	lw.from([]int16{2, 6}, now, time.Hour)
	lw.done(900, false, 4, snapshot{xmin: 3})
	lw.empty(snapshot{xmin: 5})
	if lw.floor != 900 {
		t.Fatalf("mark %d, want 900", lw.floor)
	}
	lw.reset() // a delete lost a lease: its acked rows stay below 900
	if f := lw.from([]int16{2, 6}, now, time.Hour); f != 0 {
		t.Fatalf("after reset: from %d, want 0", f)
	}
}

func TestLowWaterPendingMarksStayBounded(t *testing.T) {
	var lw lowWater
	lw.from([]int16{1}, time.Unix(0, 0), time.Hour)
	// xid 10 runs through 5000 claims, each batch deleted by a newer xid.
	for i := range 5000 {
		lw.done(int64(100+i), false, uint64(20+i), snapshot{xmin: 10})
	}
	if len(lw.pending) > maxPendingMarks || lw.floor != 0 {
		t.Fatalf("%d pending marks (max %d), mark %d (want 0 while xid 10 runs)", len(lw.pending), maxPendingMarks, lw.floor)
	}
	// Once xid 10 ends, a claim whose snapshot is past the last delete
	// settles everything read.
	lw.empty(snapshot{xmin: 6000})
	if lw.floor != 5099 || len(lw.pending) != 0 {
		t.Fatalf("mark %d, %d pending; want 5099, 0", lw.floor, len(lw.pending))
	}
}

func TestLowWaterEmptyRescanKeepsTheMark(t *testing.T) {
	start := time.Unix(0, 0)
	var lw lowWater
	lw.from([]int16{4}, start, time.Minute)
	lw.done(300, false, 9, snapshot{xmin: 8})
	lw.empty(snapshot{xmin: 10})
	if f := lw.from([]int16{4}, start.Add(time.Minute), time.Minute); f != 0 {
		t.Fatalf("rescan from %d, want 0", f)
	}
	lw.empty(snapshot{xmin: 11}) // nothing appeared below 300
	if f := lw.from([]int16{4}, start.Add(61*time.Second), time.Minute); f != 300 {
		t.Fatalf("after an empty rescan: from %d, want 300", f)
	}
	// A reset (new incarnation) is not a rescan: nothing to put back.
	lw.reset()
	lw.from([]int16{4}, start.Add(62*time.Second), time.Minute)
	lw.empty(snapshot{xmin: 12})
	if lw.floor != 0 {
		t.Fatalf("mark %d after a reset and an empty claim, want 0", lw.floor)
	}
}
