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
	// Claim 1 read ids up to 100 while xid 50 was running (xmax 60).
	lw.done(100, false, snapshot{xmin: 50, xmax: 60})
	if lw.floor != 0 {
		t.Fatalf("mark %d after a claim with a running transaction, want 0", lw.floor)
	}
	// Claim 2 (ids up to 130): xid 50 still running, so claim 1 is not complete.
	lw.done(130, false, snapshot{xmin: 50, xmax: 70})
	if lw.floor != 0 {
		t.Fatalf("mark %d while xid 50 still runs, want 0", lw.floor)
	}
	// Claim 3 found nothing; everything below 60 ended, 65 still runs:
	// claim 1 is complete, claim 2 (xmax 70) is not.
	lw.empty(snapshot{xmin: 65, xmax: 75})
	if lw.floor != 100 {
		t.Fatalf("mark %d, want 100 (claim 1 complete)", lw.floor)
	}
	if got := lw.from([]int16{1, 3}, now, time.Hour); got != 100 {
		t.Fatalf("same shards in another order: from %d, want 100", got)
	}
	// Claim 4 is a full batch up to 120 with nothing running: claim 2
	// (up to 130) is complete, but rows above 120 were not read.
	lw.done(120, true, snapshot{xmin: 80, xmax: 80})
	if lw.floor != 120 {
		t.Fatalf("mark %d after a full batch up to 120, want 120", lw.floor)
	}
	if len(lw.pending) != 0 {
		t.Fatalf("pending %v, want none", lw.pending)
	}
	// The mark never goes back.
	lw.done(125, true, snapshot{xmin: 90, xmax: 90})
	lw.empty(snapshot{xmin: 95, xmax: 95})
	if lw.floor != 125 {
		t.Fatalf("mark %d, want 125", lw.floor)
	}
}

func TestLowWaterFailureAndShardChangesKeepItBelowPendingRows(t *testing.T) {
	now := time.Unix(0, 0)
	var lw lowWater
	lw.from([]int16{1}, now, time.Hour)
	lw.done(10, false, snapshot{xmin: 5, xmax: 5})
	if lw.floor != 10 {
		t.Fatalf("mark %d, want 10", lw.floor)
	}
	// A batch above 10 left rows behind: its claim and the older pending
	// ones are forgotten, the mark stays.
	lw.done(20, false, snapshot{xmin: 6, xmax: 9})
	lw.failed()
	lw.empty(snapshot{xmin: 100, xmax: 100})
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
	lw.done(500, false, snapshot{xmin: 9, xmax: 9})
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
	// The next claim is back to normal and the rescan is a minute away.
	lw.done(501, false, snapshot{xmin: 10, xmax: 10})
	if f := lw.from([]int16{7}, start.Add(61*time.Second), time.Minute); f != 501 {
		t.Fatalf("after the rescan: from %d, want 501", f)
	}
	if n := lw.stragglers([]int64{42}); n != 0 {
		t.Fatalf("%d stragglers outside a rescan", n)
	}
}
