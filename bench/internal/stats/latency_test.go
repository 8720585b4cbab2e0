package stats

import (
	"testing"
	"time"
)

func TestRankNearestRank(t *testing.T) {
	var l Latencies
	for i := 1; i <= 1000; i++ {
		l = append(l, time.Duration(i)*time.Millisecond)
	}
	// Shuffle-ish: reverse, Summarize must sort a copy.
	for i, j := 0, len(l)-1; i < j; i, j = i+1, j-1 {
		l[i], l[j] = l[j], l[i]
	}
	s := l.Summarize()
	want := Summary{N: 1000, Mean: 500500 * time.Microsecond, P50: 500 * time.Millisecond, P99: 990 * time.Millisecond, P999: 999 * time.Millisecond, Max: time.Second}
	if s != want {
		t.Fatalf("Summarize = %+v, want %+v", s, want)
	}
	if l[0] != 1000*time.Millisecond {
		t.Fatal("Summarize sorted the caller's slice")
	}
	if got := (Latencies{7 * time.Second}).Summarize(); got.P50 != 7*time.Second || got.P999 != 7*time.Second {
		t.Errorf("one value: %+v", got)
	}
	if got := (Latencies{}).Summarize(); got.N != 0 || got.Max != 0 {
		t.Errorf("empty: %+v", got)
	}
}
