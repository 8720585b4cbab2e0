package main

import (
	"fmt"
	"math"
	"runtime"
	"slices"
	"sort"
	"strings"
	"time"
)

// pipelineResult turns the steps of a pipeline run into the report's rows,
// tables, series and notes.
func pipelineResult(cfg pipelineConfig, started time.Time, steps []stepResult, maxOK float64, mem []procMem, pl *pipeline) Result {
	res := Result{
		Part:      "pipeline",
		Quick:     cfg.Quick,
		StartedAt: started.UTC(),
		Seconds:   time.Since(started).Seconds(),
	}
	byRate := slices.Clone(steps)
	sort.SliceStable(byRate, func(i, j int) bool { return byRate[i].Offered < byRate[j].Offered })

	slo := "p99 < " + cfg.SLO.String()
	for _, st := range byRate {
		if st.E2E.N == 0 {
			res.Rows = append(res.Rows, Row{
				Name: fmt.Sprintf("e2e commit→searchable p99 @ %.0f writes/s", st.Offered),
				Unit: "ms",
			}.WithTarget(slo+" (no sample became searchable)", false))
			continue
		}
		res.Rows = append(res.Rows, Row{
			Name:  fmt.Sprintf("e2e commit→searchable p99 @ %.0f writes/s", st.Offered),
			Value: ms(st.E2E.P99),
			Unit:  "ms",
		}.WithTarget(slo+" incl. queueing", st.Pass))
	}
	if st, ok := stepAt(byRate, 1000); ok && st.E2E.N > 0 {
		res.Rows = append(res.Rows, Row{Name: "e2e commit→searchable p50 @ 1000 writes/s", Value: ms(st.E2E.P50), Unit: "ms"})
	}
	maxRow := Row{Name: "highest rate with p99 send→searchable < " + cfg.SLO.String(), Value: maxOK, Unit: "writes/s"}
	if maxOK > 0 {
		if st, ok := stepAt(byRate, maxOK); ok {
			res.Rows = append(res.Rows, Row{
				Name: fmt.Sprintf("api create latency p99 @ %.0f writes/s (from intended send)", maxOK), Value: ms(st.API.P99), Unit: "ms",
			})
		}
	}
	res.Rows = append(res.Rows, maxRow)
	for _, m := range mem {
		if m.Err != nil {
			continue
		}
		res.Rows = append(res.Rows, Row{Name: "peak RSS " + m.Name, Value: float64(m.Mem.HWMKiB) / 1024, Unit: "MiB"})
	}

	// Detail: one line per rate, in the order they ran.
	lat := Table{
		Title: fmt.Sprintf("Steady offered rates, %s each, %d projector(s); commit = API 201, searchable = returned by _search on the alias at that version", cfg.StepDuration, cfg.Projectors),
		Columns: []string{"offered w/s", "achieved w/s", "api p50", "api p99", "api p99.9",
			"e2e p50", "e2e p99", "e2e max", "send→searchable p99", "errors", "samples (missing)", "verdict"},
	}
	for _, st := range steps {
		lat.Rows = append(lat.Rows, []string{
			fmt.Sprintf("%.0f", st.Offered), fmt.Sprintf("%.0f", st.Achieved),
			fmtMS(st.API.P50), fmtMS(st.API.P99), fmtMS(st.API.P999),
			fmtMS(st.E2E.P50), fmtMS(st.E2E.P99), fmtMS(st.E2E.Max), fmtMS(st.Full.P99),
			errorText(st), fmt.Sprintf("%d (%d)", st.Samples, st.Missing), st.Why,
		})
	}
	res.Tables = append(res.Tables, lat)

	// Detail: CPU per process per rate.
	if len(byRate) > 0 {
		var names []string
		for n := range byRate[0].Cores {
			names = append(names, n)
		}
		sort.Slice(names, func(i, j int) bool {
			return cpuOrder(names[i]) < cpuOrder(names[j]) || (cpuOrder(names[i]) == cpuOrder(names[j]) && names[i] < names[j])
		})
		cpu := Table{
			Title:   fmt.Sprintf("CPU used per process during each rate's load window (cores; the machine has %d). PostgreSQL backends are split by the client they serve (application_name); \"postgresql (rest)\" is the postmaster, its background workers and other clients' sessions; \"%s\" is busy time of everything else on the machine", runtime.NumCPU(), otherCPU),
			Columns: append(append([]string{"offered w/s"}, names...), "pipeline total", "pipeline CPU ms per write"),
		}
		for _, st := range byRate {
			row := []string{fmt.Sprintf("%.0f", st.Offered)}
			var total float64
			for _, n := range names {
				row = append(row, fmt.Sprintf("%.2f", st.Cores[n]))
				if n != otherCPU {
					total += st.Cores[n]
				}
			}
			perWrite := "–"
			if st.Achieved > 0 {
				perWrite = fmt.Sprintf("%.2f", total/st.Achieved*1000)
			}
			cpu.Rows = append(cpu.Rows, append(row, fmt.Sprintf("%.2f", total), perWrite))
		}
		res.Tables = append(res.Tables, cpu)
	}

	// Detail: the stages' own histograms next to the measured end to end.
	if len(byRate) > 0 && len(byRate[0].Stages) > 0 {
		cols := []string{"offered w/s"}
		for _, sg := range byRate[0].Stages {
			cols = append(cols, sg.Label+" mean", sg.Label+" p99≈")
		}
		cols = append(cols, "measured commit→searchable mean", "measured p99")
		stg := Table{
			Title:   "Where the time goes: the binaries' own histograms (p99≈ interpolated within buckets; means exact) and the measured commit → searchable; the rest is the wait for Elasticsearch's refresh",
			Columns: cols,
		}
		for _, st := range byRate {
			row := []string{fmt.Sprintf("%.0f", st.Offered)}
			for _, sg := range st.Stages {
				if sg.Err != nil || sg.N <= 0 {
					row = append(row, "–", "–")
					continue
				}
				row = append(row, fmtMS(sg.Mean), fmtMS(sg.P99))
			}
			stg.Rows = append(stg.Rows, append(row, fmtMS(st.E2E.Mean), fmtMS(st.E2E.P99)))
		}
		res.Tables = append(res.Tables, stg)
	}

	memT := Table{Title: "Memory of each process at the end of the run", Columns: []string{"process", "peak RSS (VmHWM)", "RSS at end"}}
	for _, m := range mem {
		if m.Err != nil {
			memT.Rows = append(memT.Rows, []string{m.Name, "unknown: " + m.Err.Error(), ""})
			continue
		}
		memT.Rows = append(memT.Rows, []string{m.Name, fmt.Sprintf("%.0f MiB", float64(m.Mem.HWMKiB)/1024), fmt.Sprintf("%.0f MiB", float64(m.Mem.RSSKiB)/1024)})
	}
	res.Tables = append(res.Tables, memT)

	// Plot: latency percentiles vs offered rate.
	line := func(label string, f func(stepResult) (time.Duration, bool)) {
		s := Series{Name: "latency_vs_rate/" + label, XLabel: "offered rate (writes/s)", YLabel: "latency (ms, log scale)"}
		for _, st := range byRate {
			if d, ok := f(st); ok {
				s.Points = append(s.Points, Point{X: st.Offered, Y: ms(d)})
			}
		}
		if len(s.Points) > 0 {
			res.Series = append(res.Series, s)
		}
	}
	line("e2e p50", func(st stepResult) (time.Duration, bool) { return st.E2E.P50, st.E2E.N > 0 })
	line("e2e p99", func(st stepResult) (time.Duration, bool) { return st.E2E.P99, st.E2E.N > 0 })
	line("e2e max", func(st stepResult) (time.Duration, bool) { return st.E2E.Max, st.E2E.N > 0 })
	line("api p99 (from intended send)", func(st stepResult) (time.Duration, bool) { return st.API.P99, st.API.N > 0 })
	line("SLO "+cfg.SLO.String(), func(stepResult) (time.Duration, bool) { return cfg.SLO, true })

	ps := pl.poller.stats()
	res.Notes = append(res.Notes,
		fmt.Sprintf("Load: open-loop product creates (POST /v1/products), fixed arrival rate, at most %d requests in flight; latency counts from the intended send time, so a slow API is not hidden by coordinated omission.", cfg.MaxInFlight),
		fmt.Sprintf("Searchable: up to %.0f sampled writes/s (and the last of each rate) are polled every %s with an ids query on the alias `%s` (not GET, which is realtime); a sample counts as searchable at the first response that returns it with its version, so times are late by at most the poll interval plus one round trip.", cfg.SamplesPerSec, cfg.PollInterval, pl.alias),
		"A rate is sustained when ≤ 1% of writes fail, every sample becomes searchable and p99 from intended send to searchable (commit → searchable plus any queueing in front of the API) stays under the SLO. Before each rate the pipeline must drain (fresh writes searchable). Fixed rates above one the pipeline could not carry (< 90% of the writes done) are skipped; the highest sustained rate is searched by probing ×1.5 and bisecting.",
		fmt.Sprintf("%d searches against Elasticsearch, %d failed; search round trip mean %s, max %s.", ps.Searches, ps.Errors, ps.MeanRTT.Round(time.Millisecond/10), ps.MaxRTT.Round(time.Millisecond)),
	)
	res.Notes = append(res.Notes, findings(byRate)...)
	res.Notes = append(res.Notes, pl.notes...)
	if ps.LastErr != nil {
		res.Notes = append(res.Notes, "last search error: "+ps.LastErr.Error())
	}
	return res
}

func stepAt(steps []stepResult, rate float64) (stepResult, bool) {
	for _, st := range steps {
		if st.Offered == rate {
			return st, true
		}
	}
	return stepResult{}, false
}

func fmtMS(d time.Duration) string {
	if d == 0 {
		return "–"
	}
	return fmtNum(ms(d)) + " ms"
}

func errorText(st stepResult) string {
	bad := st.Errors + st.Unsent
	if bad == 0 {
		return "0"
	}
	var kinds []string
	for k, n := range st.ErrKinds {
		kinds = append(kinds, fmt.Sprintf("%s×%d", k, n))
	}
	if st.Unsent > 0 {
		kinds = append(kinds, fmt.Sprintf("unsent×%d", st.Unsent))
	}
	sort.Strings(kinds)
	return fmt.Sprintf("%d (%s)", bad, strings.Join(kinds, ", "))
}

// cpuOrder puts the cqrsflow binaries first, then the stack, then the bench.
func cpuOrder(name string) int {
	switch {
	case name == "api":
		return 0
	case name == "outbox-relay":
		return 1
	case strings.HasPrefix(name, "projector"):
		return 2
	case strings.HasPrefix(name, pgGroupPrefix):
		return 3
	case name == "postgresql (rest)":
		return 4
	case name == "kafka":
		return 5
	case name == "elasticsearch":
		return 6
	case name == otherCPU:
		return 8
	default:
		return 7
	}
}

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
	var total float64
	for n, c := range top.Cores {
		if n == otherCPU {
			continue
		}
		uses = append(uses, use{n, c})
		total += c
	}
	sort.Slice(uses, func(i, j int) bool { return uses[i].cores > uses[j].cores })
	if len(uses) > 0 && total > 0 {
		var parts []string
		for _, u := range uses[:min(4, len(uses))] {
			parts = append(parts, fmt.Sprintf("%s %.2f", u.name, u.cores))
		}
		out = append(out, fmt.Sprintf("CPU at %.0f writes/s (%s): the pipeline and its stack used %.2f cores, %.2f ms of CPU per write; the largest shares: %s.",
			top.Offered, which, total, total/top.Achieved*1000, strings.Join(parts, ", ")))
	}
	if len(top.Stages) == 2 && top.Stages[0].N > 0 && top.Stages[1].N > 0 && top.E2E.N > 0 {
		ack, indexed := top.Stages[0].Mean, top.Stages[1].Mean
		out = append(out, fmt.Sprintf("Time at %.0f writes/s, means: commit → Kafka ack %s, Kafka ack → indexed %s, indexed → searchable (refresh wait and polling) %s, of a measured commit → searchable of %s.",
			top.Offered, fmtMS(ack), fmtMS(max(0, indexed-ack)), fmtMS(max(0, top.E2E.Mean-indexed)), fmtMS(top.E2E.Mean)))
	}
	var worst float64
	for _, st := range byRate {
		worst = math.Max(worst, st.Cores[otherCPU])
	}
	if worst >= 0.2 {
		out = append(out, fmt.Sprintf("Other processes on the machine used up to %.2f cores during a rate (column %q): the machine was shared, so these numbers are pessimistic.", worst, otherCPU))
	}
	return out
}
