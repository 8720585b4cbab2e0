package write

import (
	"fmt"
	"runtime"
	"time"

	"cqrsflow/bench/internal/procs"
	"cqrsflow/bench/internal/result"
	"cqrsflow/bench/internal/stats"
	"cqrsflow/bench/loadgen"
)

// Targets: with group commit the api at least matches raw pgx running one
// command per transaction, and at half its maximum its p99 stays within
// twice the raw baseline's p99 at the same rate.
const (
	minRatio      = 1.0
	maxFixedRatio = 2.0
)

// measurement is what the part measured.
type measurement struct {
	Closed          closed          // closed loop, every side
	Half            float64         // the open loop's rate: 50% of the api's maximum
	Fixed, RawFixed loadgen.Summary // open loop at Half: api (group commit), raw pgx one per transaction
	SingleFixed     loadgen.Summary // open loop at Half: api with GROUP_COMMIT=false
	Load0, Load1    string          // 1-minute load average at start and end
}

func (m measurement) api() loadgen.Summary { return m.Closed.Sum[sideAPI] }

// ratio is a side's closed-loop throughput over another's.
func (m measurement) ratio(side, base int) float64 {
	if m.Closed.Sum[base].Throughput == 0 {
		return 0
	}
	return m.Closed.Sum[side].Throughput / m.Closed.Sum[base].Throughput
}

func (m measurement) fixedOK() bool {
	return m.Fixed.Errors == 0 && m.RawFixed.P99 > 0 && float64(m.Fixed.P99) <= maxFixedRatio*float64(m.RawFixed.P99)
}

// apiCPUus is an api side's process CPU per command, in µs.
func (m measurement) apiCPUus(side int) float64 {
	s := m.Closed.Sum[side]
	if s.Ops == 0 {
		return 0
	}
	return float64(m.Closed.CPUTicks[side]) / procs.ClockTicks * 1e6 / float64(s.Ops)
}

// print writes the comparison table and the verdicts.
func (m measurement) print(sides [nSides]side) {
	ms := stats.MS
	fmt.Printf("1-min load average: %s at start, %s at end (other processes on the machine skew the numbers)\n", m.Load0, m.Load1)
	fmt.Println()
	fmt.Printf("%-40s %10s %9s %9s %7s %12s\n", "closed loop", "cmd/s", "p50 ms", "p99 ms", "errors", "api µs/cmd")
	for k, sd := range sides {
		s := m.Closed.Sum[k]
		cpu := ""
		if sd.api != nil {
			cpu = fmt.Sprintf("%.0f", m.apiCPUus(k))
		}
		fmt.Printf("%-40s %10.0f %9.2f %9.2f %7d %12s\n", sd.name, s.Throughput, ms(s.P50), ms(s.P99), s.Errors, cpu)
	}
	fmt.Printf("api (group commit) / raw pgx one per transaction: %.2f (target >= %.1f: %s)\n",
		m.ratio(sideAPI, sideRaw), minRatio, result.PassWord(m.ratio(sideAPI, sideRaw) >= minRatio))
	fmt.Printf("api (group commit) / raw pgx group commit (the ceiling): %.2f\n", m.ratio(sideAPI, sideRawBatched))
	fmt.Printf("api GROUP_COMMIT=false / raw pgx one per transaction: %.2f\n", m.ratio(sideAPISingle, sideRaw))
	fmt.Printf("p99 at %.0f commands/s (50%% of the api's max, open loop): api %.2f ms (p50 %.2f, %d errors), raw pgx %.2f ms (p50 %.2f) (target api <= %.0fx raw: %s); api GROUP_COMMIT=false %.2f ms (p50 %.2f, %d errors)\n",
		m.Half, ms(m.Fixed.P99), ms(m.Fixed.P50), m.Fixed.Errors, ms(m.RawFixed.P99), ms(m.RawFixed.P50), maxFixedRatio, result.PassWord(m.fixedOK()),
		ms(m.SingleFixed.P99), ms(m.SingleFixed.P50), m.SingleFixed.Errors)
}

// result is what the part hands to the report.
func (m measurement) result(s settings, started time.Time) result.Result {
	ms := stats.MS
	const raw = "raw pgx, one command per transaction"
	sum := m.Closed.Sum
	api := sum[sideAPI]
	return result.Result{Part: "write", Quick: s.Quick, StartedAt: started, Seconds: time.Since(started).Seconds(),
		Rows: []result.Row{
			result.Row{Name: fmt.Sprintf("api mixed commands, group commit, %d clients", s.Clients), Value: api.Throughput, Unit: "cmd/s"}.
				WithBaseline(raw, sum[sideRaw].Throughput).WithTarget(fmt.Sprintf("ratio ≥ %.1f", minRatio), m.ratio(sideAPI, sideRaw) >= minRatio),
			result.Row{Name: fmt.Sprintf("api mixed commands, group commit, %d clients", s.Clients), Value: api.Throughput, Unit: "cmd/s"}.
				WithBaseline("raw pgx, group commit (ceiling)", sum[sideRawBatched].Throughput),
			result.Row{Name: fmt.Sprintf("api mixed commands, GROUP_COMMIT=false, %d clients", s.Clients), Value: sum[sideAPISingle].Throughput, Unit: "cmd/s"}.
				WithBaseline(raw, sum[sideRaw].Throughput),
			result.Row{Name: fmt.Sprintf("api p50 latency, %d clients", s.Clients), Value: ms(api.P50), Unit: "ms"}.
				WithBaseline(raw, ms(sum[sideRaw].P50)),
			result.Row{Name: fmt.Sprintf("api p99 latency, %d clients", s.Clients), Value: ms(api.P99), Unit: "ms"}.
				WithBaseline(raw, ms(sum[sideRaw].P99)),
			result.Row{Name: fmt.Sprintf("api p99 at 50%% of max (%.0f cmd/s, open loop)", m.Half), Value: ms(m.Fixed.P99), Unit: "ms"}.
				WithBaseline("raw pgx at the same rate", ms(m.RawFixed.P99)).WithTarget(fmt.Sprintf("≤ %.0f× raw p99", maxFixedRatio), m.fixedOK()),
		},
		Tables: []result.Table{{
			Title:   "write side: API vs raw pgx, with and without group commit",
			Columns: []string{"run", "commands/s", "p50 ms", "p99 ms", "p99.9 ms", "errors"},
			Rows: [][]string{
				tableRow("api, group commit, closed loop", api),
				tableRow("api, GROUP_COMMIT=false, closed loop", sum[sideAPISingle]),
				tableRow("raw pgx, one command per transaction, closed loop", sum[sideRaw]),
				tableRow("raw pgx, group commit, closed loop", sum[sideRawBatched]),
				tableRow(fmt.Sprintf("api, group commit, open loop %.0f/s", m.Half), m.Fixed),
				tableRow(fmt.Sprintf("api, GROUP_COMMIT=false, open loop %.0f/s", m.Half), m.SingleFixed),
				tableRow(fmt.Sprintf("raw pgx, one command per transaction, open loop %.0f/s", m.Half), m.RawFixed),
			},
		}},
		Notes: []string{
			fmt.Sprintf("1-min load average %s at start, %s at end; api process CPU %.0f µs per command with group commit, %.0f without",
				m.Load0, m.Load1, m.apiCPUus(sideAPI), m.apiCPUus(sideAPISingle)),
			fmt.Sprintf("%d clients, %v per side, %.0f%% updates / %.0f%% creates of products, pool %d, %d CPUs, api LOG_LEVEL=%s; the baselines call eventstore.Execute in-process (same SQL, no HTTP/JSON/validation), one command per transaction or through eventstore.Batcher with the api's defaults",
				s.Clients, s.Duration, 100*s.UpdateShare, 100-100*s.UpdateShare, s.MaxConns, runtime.NumCPU(), s.LogLevel),
		},
	}
}

func tableRow(name string, s loadgen.Summary) []string {
	ms := func(d time.Duration) string { return fmt.Sprintf("%.2f", stats.MS(d)) }
	return []string{name, fmt.Sprintf("%.0f", s.Throughput), ms(s.P50), ms(s.P99), ms(s.P999), fmt.Sprint(s.Errors)}
}
