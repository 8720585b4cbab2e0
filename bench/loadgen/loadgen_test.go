package loadgen

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	var s []time.Duration
	for i := 1; i <= 100; i++ {
		s = append(s, time.Duration(i))
	}
	for q, want := range map[float64]time.Duration{0.5: 50, 0.99: 99, 1: 100, 0: 1} {
		if got := Percentile(s, q); got != want {
			t.Errorf("q%v = %v, want %v", q, got, want)
		}
	}
	if Percentile(nil, .5) != 0 {
		t.Error("empty")
	}
}

func TestClosedLoopCountsOpsAndErrors(t *testing.T) {
	var n atomic.Int64
	boom := errors.New("boom")
	s := ClosedLoop(context.Background(), 4, 200*time.Millisecond, func(ctx context.Context, w int) error {
		time.Sleep(time.Millisecond)
		if n.Add(1)%10 == 0 {
			return boom
		}
		return nil
	})
	if s.Ops == 0 || s.Errors == 0 || !errors.Is(s.FirstError, boom) {
		t.Fatalf("summary %v", s)
	}
	if s.P50 < time.Millisecond || s.Throughput <= 0 {
		t.Fatalf("summary %v", s)
	}
}

// A server that takes 20 ms per request with one slot cannot keep up with
// 200/s: the open loop must report the queueing (latency far above 20 ms).
func TestOpenLoopMeasuresFromIntendedTime(t *testing.T) {
	s := OpenLoop(context.Background(), 200, 300*time.Millisecond, 1, func(ctx context.Context, w int) error {
		time.Sleep(20 * time.Millisecond)
		return nil
	})
	if s.Ops != 60 {
		t.Fatalf("ops %d, want 60", s.Ops)
	}
	if s.P99 < 500*time.Millisecond {
		t.Fatalf("p99 %v hides the queueing", s.P99)
	}
	fast := OpenLoop(context.Background(), 100, 200*time.Millisecond, 4, func(ctx context.Context, w int) error { return nil })
	if fast.Ops != 20 || fast.P99 > 50*time.Millisecond {
		t.Fatalf("fast: %v", fast)
	}
}

func TestCombine(t *testing.T) {
	a := Summary{Samples: []time.Duration{1, 2, 3}, Elapsed: time.Second, Errors: 1}
	b := Summary{Samples: []time.Duration{4, 5, 6, 7}, Elapsed: time.Second}
	c := Combine(a, b)
	if c.Ops != 7 || c.Errors != 1 || c.Elapsed != 2*time.Second || c.Throughput != 3.5 || c.Max != 7 || c.P50 != 4 {
		t.Fatalf("combined %+v", c)
	}
}
