package loadgen

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// ScheduledOp is an open-loop operation that is told its place in the
// schedule: its sequence number (0, 1, …) and the time it was meant to
// start. Callers that follow single operations further (e.g. until a write
// is searchable) measure from intended, like the loop does.
type ScheduledOp func(ctx context.Context, seq int, intended time.Time) error

// OpenLoopScheduled is OpenLoop for callers that need each operation's
// sequence number and intended start, with a bound on overload: an arrival
// that cannot start within grace after the schedule's end (the server fell
// that far behind) is not sent. Unsent arrivals are counted in
// Summary.Errors and returned, so a run against a stalled server still
// ends about d+grace after it began (plus the operations in flight).
func OpenLoopScheduled(ctx context.Context, rate float64, d time.Duration, maxInFlight int, grace time.Duration, op ScheduledOp) (s Summary, unsent int) {
	if rate <= 0 || maxInFlight < 1 || grace < 0 {
		return Summary{FirstError: fmt.Errorf("loadgen: rate %v, maxInFlight %d must be > 0 and grace %v ≥ 0", rate, maxInFlight, grace)}, 0
	}
	type job struct {
		seq      int
		intended time.Time
	}
	n := int(rate * d.Seconds())
	jobs := make(chan job)
	var rec recorder
	var wg sync.WaitGroup
	for range maxInFlight {
		wg.Go(func() {
			var lat []time.Duration
			var errs int
			var first error
			for j := range jobs {
				if err := op(ctx, j.seq, j.intended); err != nil {
					errs++
					if first == nil {
						first = err
					}
					continue
				}
				lat = append(lat, time.Since(j.intended))
			}
			rec.merge(lat, errs, first)
		})
	}
	start := time.Now()
	deadline := start.Add(d + grace)
	interval := float64(time.Second) / rate
	late := 0
	sent := 0
schedule:
	for i := range n {
		// A cancelled context sends nothing more, even when the next
		// arrival is already due (select would pick a ready case at random).
		if ctx.Err() != nil {
			break
		}
		intended := start.Add(time.Duration(float64(i) * interval))
		if wait := time.Until(intended); wait > 0 {
			select {
			case <-time.After(wait):
			case <-ctx.Done():
				break schedule
			}
		} else if wait < -time.Millisecond {
			late++
		}
		left := time.Until(deadline)
		if left <= 0 {
			break
		}
		t := time.NewTimer(left)
		select {
		case jobs <- job{seq: i, intended: intended}:
			t.Stop()
			sent++
		case <-t.C:
			break schedule
		case <-ctx.Done():
			t.Stop()
			break schedule
		}
	}
	close(jobs)
	wg.Wait()
	unsent = n - sent
	rec.errs += unsent
	if rec.firstErr == nil && unsent > 0 {
		rec.firstErr = fmt.Errorf("loadgen: %d of %d arrivals not sent within %v after the schedule", unsent, n, grace)
	}
	s = rec.summary(time.Since(start))
	s.TargetRate, s.Late = rate, late
	return s, unsent
}
