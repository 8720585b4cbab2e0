// Package loadgen drives benchmark load: a closed loop (N workers, each
// sending its next request when the previous one answered, for a fixed
// duration) and an open loop (a fixed arrival rate; latency measured from
// the INTENDED send time, so a slow server cannot hide its queueing —
// no coordinated omission). Latencies are summarized with exact
// percentiles over the sorted samples.
package loadgen

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"
)

// Op is one operation; worker is the index of the calling worker.
type Op func(ctx context.Context, worker int) error

// Summary is the outcome of a run.
type Summary struct {
	Ops        int           // successful operations
	Errors     int           // failed operations
	FirstError error         // the first failure, if any
	Elapsed    time.Duration // wall time of the run
	Throughput float64       // successful ops per second
	P50        time.Duration
	P90        time.Duration
	P99        time.Duration
	P999       time.Duration
	Max        time.Duration
	// Open loop only: the rate asked for and the number of sends that
	// started later than intended by more than 1 ms (generator saturated).
	TargetRate float64
	Late       int
	// Samples are the sorted latencies of the successful operations.
	Samples []time.Duration
}

func (s Summary) String() string {
	out := fmt.Sprintf("%d ok, %d errors in %v: %.0f ops/s, p50 %v p90 %v p99 %v p99.9 %v max %v",
		s.Ops, s.Errors, s.Elapsed.Round(time.Millisecond), s.Throughput,
		round(s.P50), round(s.P90), round(s.P99), round(s.P999), round(s.Max))
	if s.TargetRate > 0 {
		out += fmt.Sprintf(" (target %.0f/s, %d late sends)", s.TargetRate, s.Late)
	}
	if s.FirstError != nil {
		out += fmt.Sprintf("; first error: %v", s.FirstError)
	}
	return out
}

func round(d time.Duration) time.Duration { return d.Round(10 * time.Microsecond) }

// Percentile returns the q-quantile (0..1) of sorted latencies (nearest rank).
func Percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.5) - 1
	i = max(0, min(i, len(sorted)-1))
	return sorted[i]
}

// recorder collects latencies per worker (no lock on the hot path).
type recorder struct {
	mu       sync.Mutex
	lat      []time.Duration
	errs     int
	firstErr error
}

func (r *recorder) merge(lat []time.Duration, errs int, first error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lat = append(r.lat, lat...)
	r.errs += errs
	if r.firstErr == nil {
		r.firstErr = first
	}
}

func (r *recorder) summary(elapsed time.Duration) Summary {
	slices.Sort(r.lat)
	s := Summary{Ops: len(r.lat), Errors: r.errs, FirstError: r.firstErr, Elapsed: elapsed, Samples: r.lat,
		P50: Percentile(r.lat, .50), P90: Percentile(r.lat, .90), P99: Percentile(r.lat, .99),
		P999: Percentile(r.lat, .999)}
	if len(r.lat) > 0 {
		s.Max = r.lat[len(r.lat)-1]
	}
	if elapsed > 0 {
		s.Throughput = float64(len(r.lat)) / elapsed.Seconds()
	}
	return s
}

// Combine merges runs done one after the other (e.g. slices of two
// alternating workloads): samples and counts add up, elapsed times too.
func Combine(runs ...Summary) Summary {
	var rec recorder
	var elapsed time.Duration
	var rate float64
	late := 0
	for _, r := range runs {
		rec.merge(r.Samples, r.Errors, r.FirstError)
		elapsed += r.Elapsed
		rate = max(rate, r.TargetRate)
		late += r.Late
	}
	s := rec.summary(elapsed)
	s.TargetRate, s.Late = rate, late
	return s
}

// ClosedLoop runs op in workers goroutines back to back for d (or until
// ctx ends). Only successful operations count in latency and throughput.
func ClosedLoop(ctx context.Context, workers int, d time.Duration, op Op) Summary {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var rec recorder
	var wg sync.WaitGroup
	start := time.Now()
	for w := range workers {
		wg.Go(func() {
			var lat []time.Duration
			var errs int
			var first error
			for ctx.Err() == nil {
				t0 := time.Now()
				err := op(ctx, w)
				if ctx.Err() != nil {
					break // cut off by the end of the run: neither ok nor failed
				}
				if err != nil {
					errs++
					if first == nil {
						first = err
					}
					continue
				}
				lat = append(lat, time.Since(t0))
			}
			rec.merge(lat, errs, first)
		})
	}
	wg.Wait()
	return rec.summary(time.Since(start))
}

// OpenLoop starts operations at a fixed rate for d, running at most
// maxInFlight at once; an operation's latency is measured from the time
// it was scheduled to start, so time spent waiting for a free slot counts.
// Operations in flight at the end are waited for (bounded by ctx).
func OpenLoop(ctx context.Context, rate float64, d time.Duration, maxInFlight int, op Op) Summary {
	if rate <= 0 || maxInFlight < 1 {
		return Summary{FirstError: fmt.Errorf("loadgen: rate %v and maxInFlight %d must be > 0", rate, maxInFlight)}
	}
	n := int(rate * d.Seconds())
	jobs := make(chan time.Time, maxInFlight)
	var rec recorder
	var wg sync.WaitGroup
	for w := range maxInFlight {
		wg.Go(func() {
			var lat []time.Duration
			var errs int
			var first error
			for intended := range jobs {
				if err := op(ctx, w); err != nil {
					errs++
					if first == nil {
						first = err
					}
					continue
				}
				lat = append(lat, time.Since(intended))
			}
			rec.merge(lat, errs, first)
		})
	}
	start := time.Now()
	interval := float64(time.Second) / rate
	late := 0
schedule:
	for i := range n {
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
		select {
		case jobs <- intended:
		case <-ctx.Done():
			break schedule
		}
	}
	close(jobs)
	wg.Wait()
	s := rec.summary(time.Since(start))
	s.TargetRate, s.Late = rate, late
	return s
}
