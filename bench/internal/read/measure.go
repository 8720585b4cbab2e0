package read

import (
	"context"
	"fmt"
	"os"
	"time"

	"cqrsflow/bench/internal/procs"
	"cqrsflow/bench/loadgen"
)

// cpu is the CPU seconds the processes of interest used in some window,
// and the machine's busy seconds in it (all processes, all cores).
type cpu struct {
	API, ES, Bench, Machine float64
}

func (c cpu) add(o cpu) cpu {
	return cpu{API: c.API + o.API, ES: c.ES + o.ES, Bench: c.Bench + o.Bench, Machine: c.Machine + o.Machine}
}

// sample reads the CPU seconds so far of the api, Elasticsearch and this
// process, and the machine's busy seconds.
func (b *bench) sample() procs.Sample {
	groups := []procs.Group{{Name: "api", Pid: b.api.Pid()}, {Name: "bench", Pid: os.Getpid()}}
	if b.esPid > 0 {
		groups = append(groups, procs.Group{Name: "elasticsearch", Pid: b.esPid})
	}
	return procs.SampleCPU(groups, nil)
}

// used is the CPU each group used between s0 and s1.
func used(s0, s1 procs.Sample) cpu {
	secs := func(group string) float64 {
		var d float64
		for pid, p1 := range s1.Procs {
			if p0, ok := s0.Procs[pid]; ok && p1.Group == group {
				d += p1.Secs - p0.Secs
			}
		}
		return d
	}
	return cpu{API: secs("api"), ES: secs("elasticsearch"), Bench: secs("bench"), Machine: s1.MachineBusy - s0.MachineBusy}
}

// measure warms both sides of r up, then runs them in alternating slices
// (api, direct, direct, api, …) so that a burst of other work on the
// machine hits both alike, and reads the CPU used around every slice.
func (b *bench) measure(ctx context.Context, r route) routeMeasurement {
	apiOp, directOp := b.ops(r)
	if b.s.Warmup > 0 {
		loadgen.ClosedLoop(ctx, b.s.Clients, b.s.Warmup, apiOp)
		loadgen.ClosedLoop(ctx, b.s.Clients, b.s.Warmup, directOp)
	}
	m := routeMeasurement{Route: r}
	var apiRuns, directRuns []loadgen.Summary
	slice := b.s.Duration / time.Duration(b.s.Slices)
	run := func(op loadgen.Op) (loadgen.Summary, cpu) {
		s0 := b.sample()
		sum := loadgen.ClosedLoop(ctx, b.s.Clients, slice, op)
		return sum, used(s0, b.sample())
	}
	for i := range b.s.Slices {
		if i%2 == 0 {
			a, ac := run(apiOp)
			d, dc := run(directOp)
			apiRuns, directRuns = append(apiRuns, a), append(directRuns, d)
			m.APICPU, m.DirectCPU = m.APICPU.add(ac), m.DirectCPU.add(dc)
		} else {
			d, dc := run(directOp)
			a, ac := run(apiOp)
			apiRuns, directRuns = append(apiRuns, a), append(directRuns, d)
			m.APICPU, m.DirectCPU = m.APICPU.add(ac), m.DirectCPU.add(dc)
		}
	}
	if b.s.Verbose {
		for i := range apiRuns {
			fmt.Printf("  %s slice %d: api    %v\n  %*s direct %v\n", r.name, i, apiRuns[i], len(r.name)+9, "", directRuns[i])
		}
	}
	m.API, m.Direct = loadgen.Combine(apiRuns...), loadgen.Combine(directRuns...)
	return m
}
