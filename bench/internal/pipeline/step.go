package pipeline

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"time"

	"cqrsflow/bench/internal/procs"
	"cqrsflow/bench/internal/stats"
	"cqrsflow/bench/loadgen"
	"cqrsflow/internal/testenv"
)

// stepResult is one steady rate.
type stepResult struct {
	Offered   float64
	Duration  time.Duration
	Planned   int
	OK        int
	Errors    int
	Unsent    int
	ErrKinds  map[string]int
	Achieved  float64       // successful writes per second over the load window
	API       stats.Summary // intended send → 201 (includes waiting for a free sender)
	E2E       stats.Summary // 201 → searchable
	Full      stats.Summary // intended send → searchable
	Samples   int
	Missing   int // sampled writes not searchable within the drain timeout
	Cores     map[string]float64
	Stages    []stageStat // the binaries' own histograms over this rate
	Pass      bool
	Why       string
	DrainTime time.Duration
}

// stepLoad is what the load window of one step collects; the open loop's
// operations write it concurrently, under mu.
type stepLoad struct {
	mu       sync.Mutex
	ok       int
	errKinds map[string]int
	samples  []*visSample
	lastEnd  time.Time // when the last operation ended
}

// runStep drives creates at rate for dur, then waits for the sampled
// writes to become searchable.
func (pl *pipeline) runStep(ctx context.Context, rate float64, dur time.Duration, groups []procs.Group) stepResult {
	st := stepResult{Offered: rate, Duration: dur, Planned: int(rate * dur.Seconds())}
	before := pl.scrapeStages(ctx)
	cpu0 := procs.SampleCPU(groups, pl.pgBackends(ctx))
	start := time.Now()
	load, lr, unsent := pl.drive(ctx, rate, dur, st.Planned)
	cpu1 := procs.SampleCPU(groups, pl.pgBackends(ctx))
	st.OK, st.ErrKinds, st.Unsent = load.ok, load.errKinds, unsent
	st.Errors = lr.Errors - unsent
	window := max(dur, load.lastEnd.Sub(start))
	st.Achieved = float64(st.OK) / window.Seconds()
	st.Cores = procs.CoresUsed(cpu0, cpu1)

	// Wait for the samples; what is still missing after the drain timeout
	// counts against the rate.
	drainStart := time.Now()
	_ = pl.await(ctx, pl.cfg.DrainTimeout, load.samples)
	st.DrainTime = time.Since(drainStart)
	st.Stages = pl.stageDeltas(before, pl.scrapeStages(ctx))
	pl.poller.forget(load.samples) // the ones still pending are missing
	var e2e, full stats.Latencies
	for _, s := range load.samples {
		vis := pl.poller.visibleAt(s)
		if vis.IsZero() {
			st.Missing++
			continue
		}
		e2e = append(e2e, vis.Sub(s.Committed))
		full = append(full, vis.Sub(s.Intended))
	}
	st.Samples = len(load.samples)
	// API latency: intended send → 201, from the load generator.
	st.API = stats.Summary{N: lr.Ops, P50: lr.P50, P99: lr.P99, P999: lr.P999, Max: lr.Max}
	st.E2E, st.Full = e2e.Summarize(), full.Summarize()
	st.Pass, st.Why = judge(st, pl.cfg.SLO)
	return st
}

// drive is the load window: creates on an open-loop schedule, every
// SamplesPerSec-th one (and the last) followed until searchable.
func (pl *pipeline) drive(ctx context.Context, rate float64, dur time.Duration, planned int) (*stepLoad, loadgen.Summary, int) {
	every := max(1, int(math.Ceil(rate/pl.cfg.SamplesPerSec)))
	load := &stepLoad{errKinds: map[string]int{}}
	lr, unsent := loadgen.OpenLoopScheduled(ctx, rate, dur, pl.cfg.MaxInFlight, 5*time.Second, func(ctx context.Context, i int, intended time.Time) error {
		id, version, kind := pl.create(ctx, i)
		done := time.Now()
		load.mu.Lock()
		defer load.mu.Unlock()
		if done.After(load.lastEnd) {
			load.lastEnd = done
		}
		if kind != "" {
			load.errKinds[kind]++
			return errors.New(kind)
		}
		load.ok++
		if i%every == 0 || i == planned-1 {
			s := &visSample{ID: id, Version: version, Intended: intended, Committed: done}
			load.samples = append(load.samples, s)
			pl.poller.add(s)
		}
		return nil
	})
	return load, lr, unsent
}

// await waits until every sample is searchable, for at most timeout.
func (pl *pipeline) await(ctx context.Context, timeout time.Duration, samples []*visSample) error {
	return testenv.Until(ctx, timeout, pl.cfg.PollInterval, "the samples to become searchable", func() (bool, error) {
		return pl.poller.allVisible(samples), nil
	})
}

// judge decides whether a rate was sustained: at most 1% of the planned
// writes failed or were not sent, every sampled write became searchable,
// and the p99 from the intended send time to searchable — which contains
// the commit → searchable latency and any queueing in front of the API —
// stayed under the SLO.
func judge(st stepResult, slo time.Duration) (bool, string) {
	var why []string
	if bad := st.Errors + st.Unsent; st.Planned == 0 || float64(bad) > 0.01*float64(st.Planned) {
		why = append(why, fmt.Sprintf("%d of %d writes failed or unsent", bad, st.Planned))
	}
	if st.Missing > 0 {
		why = append(why, fmt.Sprintf("%d of %d samples not searchable in time", st.Missing, st.Samples))
	}
	if st.Samples == 0 {
		why = append(why, "no sampled write")
	}
	if st.Full.N > 0 && st.Full.P99 >= slo {
		why = append(why, fmt.Sprintf("p99 send→searchable %s ≥ %s", st.Full.P99.Round(time.Millisecond), slo))
	}
	if len(why) == 0 {
		return true, "sustained"
	}
	return false, strings.Join(why, "; ")
}

// overloaded reports whether a rate could not even be carried: under 90%
// of the offered writes succeeded within the load window (plus grace).
func (st stepResult) overloaded() bool {
	return st.Planned > 0 && (st.Achieved < 0.9*st.Offered || float64(st.Unsent+st.Errors) > 0.1*float64(st.Planned))
}
