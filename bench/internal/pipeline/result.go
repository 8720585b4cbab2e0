package pipeline

import (
	"fmt"
	"runtime"
	"slices"
	"sort"
	"strings"
	"time"

	"cqrsflow/bench/internal/procs"
	"cqrsflow/bench/internal/result"
	"cqrsflow/bench/internal/stats"
)

// pipelineResult turns the steps of a pipeline run into the report's rows,
// tables, series and notes.
func pipelineResult(cfg pipelineConfig, started time.Time, steps []stepResult, maxOK float64, mem []procMem, pl *pipeline) result.Result {
	byRate := slices.Clone(steps)
	sort.SliceStable(byRate, func(i, j int) bool { return byRate[i].Offered < byRate[j].Offered })
	res := result.Result{
		Part:      "pipeline",
		Quick:     cfg.Quick,
		StartedAt: started.UTC(),
		Seconds:   time.Since(started).Seconds(),
		Rows:      summaryRows(cfg, byRate, maxOK, mem),
		Series:    latencySeries(cfg, byRate),
		Notes:     notes(cfg, byRate, pl),
	}
	// Detail: one line per rate in the order they ran, then CPU, the
	// stages' own histograms and memory.
	res.Tables = append(res.Tables, rateTable(cfg, steps))
	if len(byRate) > 0 {
		res.Tables = append(res.Tables, cpuTable(byRate))
	}
	if len(byRate) > 0 && len(byRate[0].Stages) > 0 {
		res.Tables = append(res.Tables, stageTable(byRate))
	}
	res.Tables = append(res.Tables, memTable(mem))
	return res
}

// summaryRows are the pipeline's lines of the summary table.
func summaryRows(cfg pipelineConfig, byRate []stepResult, maxOK float64, mem []procMem) []result.Row {
	var rows []result.Row
	slo := "p99 < " + cfg.SLO.String()
	for _, st := range byRate {
		name := fmt.Sprintf("e2e commit→searchable p99 @ %.0f writes/s", st.Offered)
		if st.E2E.N == 0 {
			rows = append(rows, result.Row{Name: name, Unit: "ms"}.WithTarget(slo+" (no sample became searchable)", false))
			continue
		}
		rows = append(rows, result.Row{Name: name, Value: stats.MS(st.E2E.P99), Unit: "ms"}.WithTarget(slo+" incl. queueing", st.Pass))
	}
	if st, ok := stepAt(byRate, 1000); ok && st.E2E.N > 0 {
		rows = append(rows, result.Row{Name: "e2e commit→searchable p50 @ 1000 writes/s", Value: stats.MS(st.E2E.P50), Unit: "ms"})
	}
	if maxOK > 0 {
		if st, ok := stepAt(byRate, maxOK); ok {
			rows = append(rows, result.Row{
				Name: fmt.Sprintf("api create latency p99 @ %.0f writes/s (from intended send)", maxOK), Value: stats.MS(st.API.P99), Unit: "ms",
			})
		}
	}
	rows = append(rows, result.Row{Name: "highest rate with p99 send→searchable < " + cfg.SLO.String(), Value: maxOK, Unit: "writes/s"})
	for _, m := range mem {
		if m.Err != nil {
			continue
		}
		rows = append(rows, result.Row{Name: "peak RSS " + m.Name, Value: float64(m.Mem.HWMKiB) / 1024, Unit: "MiB"})
	}
	return rows
}

func rateTable(cfg pipelineConfig, steps []stepResult) result.Table {
	lat := result.Table{
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
	return lat
}

// cpuTable is the CPU per process per rate.
func cpuTable(byRate []stepResult) result.Table {
	var names []string
	for n := range byRate[0].Cores {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool {
		return cpuOrder(names[i]) < cpuOrder(names[j]) || (cpuOrder(names[i]) == cpuOrder(names[j]) && names[i] < names[j])
	})
	cpu := result.Table{
		Title:   fmt.Sprintf("CPU used per process during each rate's load window (cores; the machine has %d). PostgreSQL backends are split by the client they serve (application_name); \"postgresql (rest)\" is the postmaster, its background workers and other clients' sessions; \"%s\" is busy time of everything else on the machine", runtime.NumCPU(), procs.OtherCPU),
		Columns: append(append([]string{"offered w/s"}, names...), "pipeline total (without the load generator)", "pipeline CPU ms per write"),
	}
	for _, st := range byRate {
		row := []string{fmt.Sprintf("%.0f", st.Offered)}
		for _, n := range names {
			row = append(row, fmt.Sprintf("%.2f", st.Cores[n]))
		}
		total := pipelineCores(st.Cores)
		perWrite := "–"
		if st.Achieved > 0 {
			perWrite = fmt.Sprintf("%.2f", total/st.Achieved*1000)
		}
		cpu.Rows = append(cpu.Rows, append(row, fmt.Sprintf("%.2f", total), perWrite))
	}
	return cpu
}

// stageTable sets the stages' own histograms next to the measured end to
// end.
func stageTable(byRate []stepResult) result.Table {
	cols := []string{"offered w/s"}
	for _, sg := range byRate[0].Stages {
		cols = append(cols, sg.Label+" mean", sg.Label+" p99≈")
	}
	cols = append(cols, "measured commit→searchable mean", "measured p99")
	stg := result.Table{
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
	return stg
}

func memTable(mem []procMem) result.Table {
	memT := result.Table{Title: "Memory of each process at the end of the run", Columns: []string{"process", "peak RSS (VmHWM)", "RSS at end"}}
	for _, m := range mem {
		if m.Err != nil {
			memT.Rows = append(memT.Rows, []string{m.Name, "unknown: " + m.Err.Error(), ""})
			continue
		}
		memT.Rows = append(memT.Rows, []string{m.Name, fmt.Sprintf("%.0f MiB", float64(m.Mem.HWMKiB)/1024), fmt.Sprintf("%.0f MiB", float64(m.Mem.RSSKiB)/1024)})
	}
	return memT
}

// latencySeries are the lines of the latency-vs-rate plot.
func latencySeries(cfg pipelineConfig, byRate []stepResult) []result.Series {
	var out []result.Series
	line := func(label string, f func(stepResult) (time.Duration, bool)) {
		s := result.Series{Name: "latency_vs_rate/" + label, XLabel: "offered rate (writes/s)", YLabel: "latency (ms, log scale)"}
		for _, st := range byRate {
			if d, ok := f(st); ok {
				s.Points = append(s.Points, result.Point{X: st.Offered, Y: stats.MS(d)})
			}
		}
		if len(s.Points) > 0 {
			out = append(out, s)
		}
	}
	line("e2e p50", func(st stepResult) (time.Duration, bool) { return st.E2E.P50, st.E2E.N > 0 })
	line("e2e p99", func(st stepResult) (time.Duration, bool) { return st.E2E.P99, st.E2E.N > 0 })
	line("e2e max", func(st stepResult) (time.Duration, bool) { return st.E2E.Max, st.E2E.N > 0 })
	line("api p99 (from intended send)", func(st stepResult) (time.Duration, bool) { return st.API.P99, st.API.N > 0 })
	line("SLO "+cfg.SLO.String(), func(stepResult) (time.Duration, bool) { return cfg.SLO, true })
	return out
}

// notes say how the numbers were measured, what they show and what the
// rate plan skipped.
func notes(cfg pipelineConfig, byRate []stepResult, pl *pipeline) []string {
	ps := pl.poller.stats()
	out := []string{
		fmt.Sprintf("Load: open-loop product creates (POST /v1/products), fixed arrival rate, at most %d requests in flight; latency counts from the intended send time, so a slow API is not hidden by coordinated omission.", cfg.MaxInFlight),
		fmt.Sprintf("Searchable: up to %.0f sampled writes/s (and the last of each rate) are polled every %s with an ids query on the alias `%s` (not GET, which is realtime); a sample counts as searchable at the first response that returns it with its version, so times are late by at most the poll interval plus one round trip.", cfg.SamplesPerSec, cfg.PollInterval, pl.alias),
		"A rate is sustained when ≤ 1% of writes fail, every sample becomes searchable and p99 from intended send to searchable (commit → searchable plus any queueing in front of the API) stays under the SLO. Before each rate the pipeline must drain (fresh writes searchable). Fixed rates above one the pipeline could not carry (< 90% of the writes done) are skipped; the highest sustained rate is searched by probing ×1.5 and bisecting.",
		fmt.Sprintf("%d searches against Elasticsearch, %d failed; search round trip mean %s, max %s.", ps.Searches, ps.Errors, ps.MeanRTT.Round(time.Millisecond/10), ps.MaxRTT.Round(time.Millisecond)),
	}
	out = append(out, findings(byRate)...)
	out = append(out, pl.notes...)
	if ps.LastErr != nil {
		out = append(out, "last search error: "+ps.LastErr.Error())
	}
	return out
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
	return result.FormatNum(stats.MS(d)) + " ms"
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
	case name == procs.OtherCPU:
		return 8
	default:
		return 7
	}
}
