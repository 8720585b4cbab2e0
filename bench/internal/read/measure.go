package read

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"time"

	"cqrsflow/bench/internal/procs"
	"cqrsflow/bench/internal/stats"
	"cqrsflow/bench/loadgen"
)

// cpu is the CPU seconds the processes of interest used in some window,
// and the machine's busy seconds in it (all processes, all cores).
type cpu struct {
	API, Hop, ES, Bench, Machine float64
}

func (c cpu) add(o cpu) cpu {
	return cpu{API: c.API + o.API, Hop: c.Hop + o.Hop, ES: c.ES + o.ES, Bench: c.Bench + o.Bench, Machine: c.Machine + o.Machine}
}

// sample reads the CPU seconds so far of the api, the hop, Elasticsearch
// and this process, and the machine's busy seconds.
func (b *bench) sample() procs.Sample {
	groups := []procs.Group{{Name: "api", Pid: b.api.Pid()}, {Name: "bench", Pid: os.Getpid()}}
	if b.hop != nil {
		groups = append(groups, procs.Group{Name: "hop", Pid: b.hop.Pid()})
	}
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
	return cpu{API: secs("api"), Hop: secs("hop"), ES: secs("elasticsearch"), Bench: secs("bench"), Machine: s1.MachineBusy - s0.MachineBusy}
}

// batches reads the api's histogram of reads per request to
// Elasticsearch for r's kind of read (cqrsflow_read_batch_reads; empty
// when the api does not batch them). Once a scrape failed (prev), it is
// not tried again: the route's batch figures are left out.
func (b *bench) batches(ctx context.Context, r route, prev error) (stats.Histogram, error) {
	if prev != nil {
		return stats.Histogram{}, prev
	}
	fams, err := stats.Scrape(ctx, http.DefaultClient, "http://"+b.api.Addr+"/metrics")
	if err != nil {
		return stats.Histogram{}, err
	}
	return stats.HistogramFrom(fams["cqrsflow_read_batch_reads"], "kind", r.batchKind()), nil
}

// side is one way of serving a route's requests and what it measured.
type side struct {
	name string
	op   loadgen.Op
	runs []loadgen.Summary
	cpu  cpu // used during its slices
}

// measure warms the sides of r up (api, direct and, with -hop, the hop),
// then runs them in alternating slices — the order rotates every slice —
// so that a burst of other work on the machine hits all alike, and reads
// the CPU used around every slice.
func (b *bench) measure(ctx context.Context, r route) routeMeasurement {
	apiOp, directOp, hopOp := b.ops(r)
	sides := []*side{{name: "api", op: apiOp}, {name: "direct", op: directOp}}
	if hopOp != nil {
		sides = append(sides, &side{name: "hop", op: hopOp})
	}
	if b.s.Warmup > 0 {
		for _, sd := range sides {
			loadgen.ClosedLoop(ctx, b.s.Clients, b.s.Warmup, sd.op)
		}
	}
	slice := b.s.Duration / time.Duration(b.s.Slices)
	var batches stats.Histogram
	var batchErr error
	for i := range b.s.Slices {
		for j := range sides {
			sd := sides[(i+j)%len(sides)]
			var h0 stats.Histogram
			if sd.name == "api" {
				h0, batchErr = b.batches(ctx, r, batchErr)
			}
			s0 := b.sample()
			sum := loadgen.ClosedLoop(ctx, b.s.Clients, slice, sd.op)
			sd.runs, sd.cpu = append(sd.runs, sum), sd.cpu.add(used(s0, b.sample()))
			if sd.name == "api" {
				var h1 stats.Histogram
				if h1, batchErr = b.batches(ctx, r, batchErr); batchErr == nil {
					batches = batches.Add(h1.Sub(h0))
				}
			}
		}
	}
	if b.s.Verbose {
		for i := range b.s.Slices {
			for _, sd := range sides {
				fmt.Printf("  %s slice %d: %-6s %v\n", r.name, i, sd.name, sd.runs[i])
			}
		}
	}
	m := routeMeasurement{Route: r, API: loadgen.Combine(sides[0].runs...), APICPU: sides[0].cpu,
		Direct: loadgen.Combine(sides[1].runs...), DirectCPU: sides[1].cpu, Batches: batches, BatchErr: batchErr}
	if len(sides) > 2 {
		m.Hop, m.HopCPU = loadgen.Combine(sides[2].runs...), sides[2].cpu
	}
	return m
}
