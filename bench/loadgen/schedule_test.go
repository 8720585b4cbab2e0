package loadgen

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// Every arrival gets its own sequence number and its slot of the schedule
// (exactly 1/rate apart), whatever the send time.
func TestOpenLoopScheduledSequenceAndIntendedTimes(t *testing.T) {
	var (
		mu    sync.Mutex
		times = map[int]time.Time{}
	)
	boom := errors.New("boom")
	s, unsent := OpenLoopScheduled(context.Background(), 200, 250*time.Millisecond, 8, time.Second, func(_ context.Context, seq int, at time.Time) error {
		mu.Lock()
		defer mu.Unlock()
		times[seq] = at
		if seq == 7 {
			return boom
		}
		return nil
	})
	if unsent != 0 || s.Ops != 49 || s.Errors != 1 || !errors.Is(s.FirstError, boom) {
		t.Fatalf("summary %v, unsent %d; want 49 ok, 1 error", s, unsent)
	}
	if len(times) != 50 {
		t.Fatalf("%d distinct sequence numbers, want 50", len(times))
	}
	for i := 1; i < 50; i++ {
		if d := times[i].Sub(times[i-1]); d != 5*time.Millisecond {
			t.Fatalf("intended[%d] − intended[%d] = %v, want 5ms", i, i-1, d)
		}
	}
}

// A stalled server: one slot, 100 ms per operation, 100/s for 100 ms with
// 50 ms grace. The queueing shows in the latency, and what could not start
// within the grace is dropped and counted instead of stretching the run.
func TestOpenLoopScheduledBoundsOverload(t *testing.T) {
	start := time.Now()
	s, unsent := OpenLoopScheduled(context.Background(), 100, 100*time.Millisecond, 1, 50*time.Millisecond, func(context.Context, int, time.Time) error {
		time.Sleep(100 * time.Millisecond)
		return nil
	})
	if unsent == 0 || s.Ops+unsent != 10 || s.Errors != unsent || s.FirstError == nil {
		t.Fatalf("summary %v, unsent %d; want some of 10 unsent and counted as errors", s, unsent)
	}
	if s.Ops >= 2 && s.Max < 150*time.Millisecond {
		t.Errorf("max %v hides the queueing behind the stalled server", s.Max)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("run took %v, want it bounded by duration + grace + in-flight work", el)
	}
}

func TestOpenLoopScheduledCancelAndBadArgs(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	s, unsent := OpenLoopScheduled(ctx, 1000, time.Second, 4, time.Second, func(context.Context, int, time.Time) error { return nil })
	if s.Ops != 0 || unsent != 1000 {
		t.Errorf("cancelled: %v, unsent %d; want nothing sent", s, unsent)
	}
	if s, _ := OpenLoopScheduled(context.Background(), 0, time.Second, 1, 0, nil); s.FirstError == nil {
		t.Error("rate 0: want an error")
	}
}
