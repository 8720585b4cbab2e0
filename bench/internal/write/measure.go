package write

import (
	"context"
	"fmt"
	"time"

	"cqrsflow/bench/internal/procs"
	"cqrsflow/bench/internal/result"
	"cqrsflow/bench/loadgen"
)

// side is one of the things the closed loop compares.
type side struct {
	name string
	op   loadgen.Op
	api  *apiProc // nil for the in-process baselines
}

// The closed loop's sides, in the order of closed.
const (
	sideAPI = iota
	sideAPISingle
	sideRaw
	sideRawBatched
	sideFloor
	nSides
)

func (b *bench) sides() [nSides]side {
	return [nSides]side{
		sideAPI:        {"api, group commit", b.apiOp(b.api), b.api},
		sideAPISingle:  {"api, GROUP_COMMIT=false", b.apiOp(b.single), b.single},
		sideRaw:        {"raw pgx, one command per transaction", b.rawOp, nil},
		sideRawBatched: {"raw pgx, group commit", b.rawBatchedOp, nil},
		sideFloor:      {"floor: bare net/http, canned answer", b.apiOp(b.floor), b.floor},
	}
}

// closed is what the closed loop measured, per side.
type closed struct {
	Sum      [nSides]loadgen.Summary
	CPUTicks [nSides]int64 // the api process's CPU during its own slices
}

// closedLoop warms every side up, then runs them in rotating slices
// (a b c d, b c d a, …) so that a burst of other work on the machine
// hits all alike.
func (b *bench) closedLoop(ctx context.Context) closed {
	sides := b.sides()
	warm := result.Pick(b.s.Quick, time.Second, 3*time.Second)
	for _, sd := range sides {
		loadgen.ClosedLoop(ctx, b.s.Clients, warm, sd.op)
	}
	var runs [nSides][]loadgen.Summary
	var c closed
	slice := b.s.Duration / time.Duration(b.s.Slices)
	for i := range b.s.Slices {
		for j := range nSides {
			k := (i + j) % nSides
			t0 := apiTicks(sides[k].api)
			runs[k] = append(runs[k], loadgen.ClosedLoop(ctx, b.s.Clients, slice, sides[k].op))
			c.CPUTicks[k] += apiTicks(sides[k].api) - t0
		}
	}
	for k := range nSides {
		c.Sum[k] = loadgen.Combine(runs[k]...)
		if b.s.Verbose {
			for i, r := range runs[k] {
				fmt.Printf("  %s, slice %d: %v\n", sides[k].name, i, r)
			}
		}
	}
	return c
}

// open is what the open loop measured: the api with and without group
// commit, the one-per-transaction baseline and the floor, at the same
// rate, with the api's and the floor's process CPU during their slices.
type open struct {
	API, Single, Raw, Floor loadgen.Summary
	APITicks, FloorTicks    int64
}

// openLoop runs the api (both ways) and the baseline at rate in rotating
// slices. The baseline at the same rate separates the api's own tail from
// the machine's (other processes, checkpoints, autovacuum).
func (b *bench) openLoop(ctx context.Context, rate float64) open {
	// The closed loop leaves PostgreSQL with a backlog of dirty pages that,
	// flushed during the open loop, stalls commits in its first seconds
	// (see BENCHMARKS.md). A CHECKPOINT here starts every side from the
	// same, settled state (regular checkpoints can still fall into the
	// phase).
	if err := b.raw.checkpoint(ctx); err != nil {
		fmt.Println("CHECKPOINT before the open loop failed (the first slices may carry the closed loop's flush):", err)
	}
	ops := []loadgen.Op{b.apiOp(b.api), b.apiOp(b.single), b.rawOp, b.apiOp(b.floor)}
	owners := []*apiProc{b.api, b.single, nil, b.floor}
	runs := make([][]loadgen.Summary, len(ops))
	ticks := make([]int64, len(ops))
	slice := b.s.FixedDur / time.Duration(b.s.Slices)
	inFlight := 4 * b.s.Clients
	for i := range b.s.Slices {
		for j := range ops {
			k := (i + j) % len(ops)
			t0 := apiTicks(owners[k])
			runs[k] = append(runs[k], loadgen.OpenLoop(ctx, rate, slice, inFlight, ops[k]))
			ticks[k] += apiTicks(owners[k]) - t0
		}
	}
	if b.s.Verbose {
		for k, name := range []string{"api, group commit", "api, GROUP_COMMIT=false", "raw pgx", "floor"} {
			for i, r := range runs[k] {
				fmt.Printf("  open loop %s, slice %d: %v\n", name, i, r)
			}
		}
	}
	return open{API: loadgen.Combine(runs[0]...), Single: loadgen.Combine(runs[1]...), Raw: loadgen.Combine(runs[2]...),
		Floor: loadgen.Combine(runs[3]...), APITicks: ticks[0], FloorTicks: ticks[3]}
}

// floorAt runs the floor alone in an open loop at rate (the api's
// closed-loop maximum) and returns what it measured and its process CPU
// per request, in µs: what the HTTP exchanges alone cost at the rate the
// api's closed-loop CPU per command was measured at.
func (b *bench) floorAt(ctx context.Context, rate float64) (loadgen.Summary, float64) {
	t0 := apiTicks(b.floor)
	sum := loadgen.OpenLoop(ctx, rate, b.s.FixedDur/2, 4*b.s.Clients, b.apiOp(b.floor))
	return sum, cpuPerOp(apiTicks(b.floor)-t0, sum.Ops)
}

// apiTicks is the CPU time (utime+stime, clock ticks) of the api process
// a; 0 for an in-process side.
func apiTicks(a *apiProc) int64 {
	if a == nil {
		return 0
	}
	st, err := procs.ReadStat(a.proc.Pid())
	if err != nil {
		return 0
	}
	return st.CPUTicks
}
