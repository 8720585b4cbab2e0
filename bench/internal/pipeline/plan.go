package pipeline

import (
	"context"
	"fmt"
	"math"
	"time"

	"cqrsflow/bench/internal/procs"
)

// ratePlan decides which rate runs next: the fixed rates in ascending
// order (skipping those above a rate the pipeline could not even carry),
// then probes ×1.5 while nothing above the highest passing rate failed,
// then bisection between the highest passing rate and the lowest failing
// rate above it. Every count is bounded, so the run is.
type ratePlan struct {
	fixed          []float64
	probes, bisect int

	next       int
	probed     int
	bisected   int
	ran        map[float64]bool
	passed     []float64
	failed     []float64
	overloadAt float64 // lowest rate that was overloaded; 0 = none
}

func newRatePlan(fixed []float64, probes, bisect int) *ratePlan {
	return &ratePlan{fixed: fixed, probes: probes, bisect: bisect, ran: map[float64]bool{}}
}

// record notes the outcome of a rate.
func (p *ratePlan) record(rate float64, pass, overloaded bool) {
	p.ran[rate] = true
	if pass {
		p.passed = append(p.passed, rate)
	} else {
		p.failed = append(p.failed, rate)
	}
	if overloaded && (p.overloadAt == 0 || rate < p.overloadAt) {
		p.overloadAt = rate
	}
}

// best is the highest passing rate (0 if none).
func (p *ratePlan) best() float64 {
	var b float64
	for _, r := range p.passed {
		b = math.Max(b, r)
	}
	return b
}

// failAbove is the lowest failing rate above r (+Inf if none).
func (p *ratePlan) failAbove(r float64) float64 {
	f := math.Inf(1)
	for _, x := range p.failed {
		if x > r {
			f = math.Min(f, x)
		}
	}
	return f
}

// nextRate returns the next rate to run, and a note for every fixed rate
// it skipped; ok is false when the plan is done.
func (p *ratePlan) nextRate() (rate float64, skipped []string, ok bool) {
	for p.next < len(p.fixed) {
		r := p.fixed[p.next]
		p.next++
		if p.overloadAt > 0 && r > p.overloadAt {
			skipped = append(skipped, fmt.Sprintf("skipped %.0f writes/s: %.0f writes/s already could not be carried", r, p.overloadAt))
			continue
		}
		return r, skipped, true
	}
	best := p.best()
	hi := p.failAbove(best)
	if math.IsInf(hi, 1) && p.probed < p.probes && best > 0 {
		top := best
		for r := range p.ran {
			top = math.Max(top, r)
		}
		if top == best { // nothing ran above the best: go higher
			p.probed++
			return math.Round(best*1.5/50) * 50, skipped, true
		}
	}
	if !math.IsInf(hi, 1) && p.bisected < p.bisect {
		mid := math.Round((best+hi)/2/50) * 50
		if mid > best && mid < hi && mid >= 50 && !p.ran[mid] {
			p.bisected++
			return mid, skipped, true
		}
	}
	return 0, skipped, false
}

// runRates runs the rate plan, letting the pipeline settle before each
// rate. It returns the steps in the order run and the highest sustained
// rate (0 if none).
func (pl *pipeline) runRates(ctx context.Context, groups []procs.Group) ([]stepResult, float64, error) {
	plan := newRatePlan(pl.cfg.Rates, pl.cfg.Probes, pl.cfg.Bisect)
	var steps []stepResult
	for {
		rate, skipped, ok := plan.nextRate()
		for _, s := range skipped {
			pl.note(s)
		}
		if !ok {
			break
		}
		if ctx.Err() != nil {
			return steps, plan.best(), ctx.Err()
		}
		if d, err := pl.settle(ctx); err != nil {
			pl.note(fmt.Sprintf("stopped before %.0f writes/s: %v", rate, err))
			break
		} else if d > 2*time.Second {
			fmt.Printf("pipeline: settled in %s\n", d.Round(100*time.Millisecond))
		}
		fmt.Printf("pipeline: %.0f writes/s for %s …\n", rate, pl.cfg.StepDuration)
		st := pl.runStep(ctx, rate, pl.cfg.StepDuration, groups)
		steps = append(steps, st)
		fmt.Printf("pipeline: %.0f writes/s: achieved %.0f/s, api p99 %s, e2e p50 %s p99 %s max %s, %s\n",
			rate, st.Achieved, st.API.P99.Round(time.Millisecond), st.E2E.P50.Round(time.Millisecond),
			st.E2E.P99.Round(time.Millisecond), st.E2E.Max.Round(time.Millisecond), st.Why)
		plan.record(rate, st.Pass, st.overloaded())
	}
	return steps, plan.best(), nil
}

// note prints a remark on the rate plan and keeps it for the report.
func (pl *pipeline) note(s string) {
	fmt.Println("pipeline: " + s)
	pl.notes = append(pl.notes, s)
}

// settle waits until the pipeline has worked off earlier load: a few
// fresh writes (on different keys, so on different partitions) must become
// searchable, which means everything queued before them on their
// partitions was projected. Bounded by SettleTimeout.
func (pl *pipeline) settle(ctx context.Context) (time.Duration, error) {
	start := time.Now()
	var samples []*visSample
	for i := range 4 {
		pl.settles++
		id, version, kind := pl.create(ctx, 1_000_000_000+4*pl.settles+i)
		if kind != "" {
			return 0, fmt.Errorf("settle write failed: %s", kind)
		}
		s := &visSample{ID: id, Version: version, Committed: time.Now()}
		samples = append(samples, s)
		pl.poller.add(s)
	}
	if err := pl.await(ctx, pl.cfg.SettleTimeout-time.Since(start), samples); err != nil {
		pl.poller.forget(samples)
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		return 0, fmt.Errorf("the pipeline did not drain within %s", pl.cfg.SettleTimeout)
	}
	return time.Since(start), nil
}
