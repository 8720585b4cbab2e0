package main

import (
	"context"
	"sync"
	"time"
)

// openLoopResult counts what an open-loop run did.
type openLoopResult struct {
	Planned int // arrivals the schedule had
	Fired   int // calls started
	Unsent  int // arrivals dropped because the schedule ran past its grace
}

// openLoop calls fire at a fixed arrival rate for dur: the i-th call is due
// at start + i/rate and receives that intended time, so the caller measures
// latency from when the request should have gone out (no coordinated
// omission: a slow server delays the sends, and that delay is counted).
// At most maxInFlight calls run at once; when that many are outstanding,
// sends wait. Arrivals still unsent grace after the schedule ended are
// dropped and counted in Unsent. openLoop returns when every fired call
// has returned.
func openLoop(ctx context.Context, rate float64, dur time.Duration, maxInFlight int, grace time.Duration,
	fire func(ctx context.Context, i int, intended time.Time)) openLoopResult {
	planned := int(rate * dur.Seconds())
	res := openLoopResult{Planned: planned}
	if planned <= 0 {
		return res
	}
	interval := time.Duration(float64(time.Second) / rate)
	start := time.Now()
	deadline := start.Add(dur + grace)
	sem := make(chan struct{}, max(1, maxInFlight))
	var wg sync.WaitGroup
	for i := range planned {
		intended := start.Add(time.Duration(i) * interval)
		if d := time.Until(intended); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-ctx.Done():
				t.Stop()
			case <-t.C:
			}
		}
		if ctx.Err() != nil || time.Now().After(deadline) {
			res.Unsent = planned - i
			break
		}
		acquired := false
		select {
		case sem <- struct{}{}:
			acquired = true
		case <-ctx.Done():
		case <-time.After(time.Until(deadline)):
		}
		if !acquired || ctx.Err() != nil {
			if acquired {
				<-sem
			}
			res.Unsent = planned - i
			break
		}
		res.Fired++
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			fire(ctx, i, intended)
		}()
	}
	wg.Wait()
	return res
}
