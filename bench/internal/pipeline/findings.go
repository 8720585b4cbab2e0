package pipeline

import (
	"fmt"
	"math"
	"sort"
	"strings"

	"cqrsflow/bench/internal/procs"
)

// findings states, from the measurements, where CPU and time went at the
// highest sustained rate (else the highest rate the pipeline carried, ≥ 90%
// of the writes done), and whether other processes competed for the machine.
func findings(byRate []stepResult) []string {
	var out []string
	var top *stepResult
	which := "the highest sustained rate"
	for i := range byRate {
		if byRate[i].Pass {
			top = &byRate[i]
		}
	}
	if top == nil {
		which = "the highest rate carried; none was sustained"
		for i := range byRate {
			if !byRate[i].overloaded() && byRate[i].Achieved > 0 {
				top = &byRate[i]
			}
		}
	}
	if top == nil {
		return nil
	}
	type use struct {
		name  string
		cores float64
	}
	var uses []use
	for n, c := range top.Cores {
		if n != procs.OtherCPU && n != loadGenerator {
			uses = append(uses, use{n, c})
		}
	}
	total := pipelineCores(top.Cores)
	sort.Slice(uses, func(i, j int) bool { return uses[i].cores > uses[j].cores })
	if len(uses) > 0 && total > 0 {
		var parts []string
		for _, u := range uses[:min(4, len(uses))] {
			parts = append(parts, fmt.Sprintf("%s %.2f", u.name, u.cores))
		}
		out = append(out, fmt.Sprintf("CPU at %.0f writes/s (%s): the pipeline and its stack used %.2f cores, %.2f ms of CPU per write; the largest shares: %s; the load generator (not counted) %.2f cores.",
			top.Offered, which, total, total/top.Achieved*1000, strings.Join(parts, ", "), top.Cores[loadGenerator]))
	}
	if len(top.Stages) == 2 && top.Stages[0].N > 0 && top.Stages[1].N > 0 && top.E2E.N > 0 {
		ack, indexed := top.Stages[0].Mean, top.Stages[1].Mean
		out = append(out, fmt.Sprintf("Time at %.0f writes/s, means: commit → Kafka ack %s, Kafka ack → indexed %s, indexed → searchable (refresh wait and polling) %s, of a measured commit → searchable of %s.",
			top.Offered, fmtMS(ack), fmtMS(max(0, indexed-ack)), fmtMS(max(0, top.E2E.Mean-indexed)), fmtMS(top.E2E.Mean)))
	}
	var worst float64
	for _, st := range byRate {
		worst = math.Max(worst, st.Cores[procs.OtherCPU])
	}
	if worst >= 0.2 {
		out = append(out, fmt.Sprintf("Other processes on the machine used up to %.2f cores during a rate (column %q): the machine was shared, so these numbers are pessimistic.", worst, procs.OtherCPU))
	}
	return out
}
