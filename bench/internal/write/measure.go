package write

import (
	"context"
	"fmt"
	"time"

	"cqrsflow/bench/internal/procs"
	"cqrsflow/bench/internal/result"
	"cqrsflow/bench/loadgen"
)

// closedLoop warms both sides up, then runs them in alternating slices
// (api, raw, raw, api, …) so that a burst of other work on the machine
// hits both alike. apiCPU is the CPU ticks the api process used during its
// own slices.
func (b *bench) closedLoop(ctx context.Context) (api, raw loadgen.Summary, apiCPU int64) {
	warm := result.Pick(b.s.Quick, time.Second, 3*time.Second)
	loadgen.ClosedLoop(ctx, b.s.Clients, warm, b.apiOp)
	loadgen.ClosedLoop(ctx, b.s.Clients, warm, b.rawOp)
	var apiRuns, rawRuns []loadgen.Summary
	slice := b.s.Duration / time.Duration(b.s.Slices)
	for i := range b.s.Slices {
		first, second := b.apiOp, b.rawOp
		if i%2 == 1 {
			first, second = second, first
		}
		t0 := b.apiTicks()
		x := loadgen.ClosedLoop(ctx, b.s.Clients, slice, first)
		t1 := b.apiTicks()
		y := loadgen.ClosedLoop(ctx, b.s.Clients, slice, second)
		t2 := b.apiTicks()
		if i%2 == 1 {
			x, y = y, x
			apiCPU += t2 - t1
		} else {
			apiCPU += t1 - t0
		}
		apiRuns, rawRuns = append(apiRuns, x), append(rawRuns, y)
	}
	b.printSlices(apiRuns, rawRuns)
	return loadgen.Combine(apiRuns...), loadgen.Combine(rawRuns...), apiCPU
}

// openLoop runs both sides at rate in alternating slices. The baseline at
// the same rate separates the API's own tail from the machine's (other
// processes, checkpoints, autovacuum).
func (b *bench) openLoop(ctx context.Context, rate float64) (api, raw loadgen.Summary) {
	// The closed loop leaves PostgreSQL with a backlog of dirty pages that,
	// flushed during the open loop, stalls commits in its first seconds
	// (see BENCHMARKS.md). A CHECKPOINT here starts both sides from the
	// same, settled state (regular checkpoints can still fall into the
	// phase).
	if err := b.raw.checkpoint(ctx); err != nil {
		fmt.Println("CHECKPOINT before the open loop failed (the first slices may carry the closed loop's flush):", err)
	}
	var apiRuns, rawRuns []loadgen.Summary
	slice := b.s.FixedDur / time.Duration(b.s.Slices)
	inFlight := 4 * b.s.Clients
	for i := range b.s.Slices {
		if i%2 == 0 {
			apiRuns = append(apiRuns, loadgen.OpenLoop(ctx, rate, slice, inFlight, b.apiOp))
			rawRuns = append(rawRuns, loadgen.OpenLoop(ctx, rate, slice, inFlight, b.rawOp))
		} else {
			rawRuns = append(rawRuns, loadgen.OpenLoop(ctx, rate, slice, inFlight, b.rawOp))
			apiRuns = append(apiRuns, loadgen.OpenLoop(ctx, rate, slice, inFlight, b.apiOp))
		}
	}
	b.printSlices(apiRuns, rawRuns)
	return loadgen.Combine(apiRuns...), loadgen.Combine(rawRuns...)
}

// printSlices prints every slice with -v.
func (b *bench) printSlices(api, raw []loadgen.Summary) {
	if !b.s.Verbose {
		return
	}
	for i := range api {
		fmt.Printf("  slice %d: api %v\n           raw %v\n", i, api[i], raw[i])
	}
}

// apiTicks is the CPU time (utime+stime, clock ticks) of the api process.
func (b *bench) apiTicks() int64 {
	st, err := procs.ReadStat(b.api.Pid())
	if err != nil {
		return 0
	}
	return st.CPUTicks
}
