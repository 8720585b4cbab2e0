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
	maxAPICPU     = 100.0 // µs of api process CPU per command, with group commit
)

// measurement is what the part measured.
type measurement struct {
	Closed          closed          // closed loop, every side
	Half            float64         // the open loop's rate: 50% of the api's maximum
	Fixed, RawFixed loadgen.Summary // open loop at Half: api (group commit), raw pgx one per transaction
	SingleFixed     loadgen.Summary // open loop at Half: api with GROUP_COMMIT=false
	FloorFixed      loadgen.Summary // open loop at Half: the bare net/http server
	// FixedCPU is the process CPU per command in the open loop at Half,
	// µs: the api (group commit), the floor.
	FixedCPU [2]float64
	// FloorAtMax is the floor alone in an open loop at the api's
	// closed-loop maximum, FloorAtMaxCPU its CPU per request (µs).
	FloorAtMax    loadgen.Summary
	FloorAtMaxCPU float64
	Load0, Load1  string // 1-minute load average at start and end
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

// apiCPUus is an api side's process CPU per command in the closed loop,
// in µs.
func (m measurement) apiCPUus(side int) float64 {
	return cpuPerOp(m.Closed.CPUTicks[side], m.Closed.Sum[side].Ops)
}

// cpuPerOp is CPU clock ticks spread over ops, in µs.
func cpuPerOp(ticks int64, ops int) float64 {
	if ops == 0 {
		return 0
	}
	return float64(ticks) / procs.ClockTicks * 1e6 / float64(ops)
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
	fmt.Printf("api CPU per command: %.0f µs with group commit at %.0f/s (target <= %.0f µs: %s); the HTTP exchange alone (bare net/http server, canned answer): %.0f µs at the same rate, %.0f µs at its own maximum (%.0f/s)\n",
		m.apiCPUus(sideAPI), m.api().Throughput, maxAPICPU, result.PassWord(m.apiCPUus(sideAPI) <= maxAPICPU), m.FloorAtMaxCPU,
		m.apiCPUus(sideFloor), m.Closed.Sum[sideFloor].Throughput)
	fmt.Printf("at %.0f commands/s (open loop): api CPU per command %.0f µs, bare net/http server %.0f µs\n", m.Half, m.FixedCPU[0], m.FixedCPU[1])
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
			result.Row{Name: fmt.Sprintf("api process CPU per command, group commit, closed loop (%.0f cmd/s)", api.Throughput), Value: m.apiCPUus(sideAPI), Unit: "µs"}.
				WithBaseline("bare net/http server, canned answer, same rate (the floor)", m.FloorAtMaxCPU).
				WithTarget(fmt.Sprintf("≤ %.0f µs", maxAPICPU), m.apiCPUus(sideAPI) <= maxAPICPU),
			result.Row{Name: fmt.Sprintf("api process CPU per command at %.0f cmd/s (open loop)", m.Half), Value: m.FixedCPU[0], Unit: "µs"}.
				WithBaseline("bare net/http server at the same rate", m.FixedCPU[1]),
		},
		Tables: []result.Table{{
			Title:   "write side: API vs raw pgx, with and without group commit",
			Columns: []string{"run", "commands/s", "p50 ms", "p99 ms", "p99.9 ms", "errors"},
			Rows: [][]string{
				tableRow("api, group commit, closed loop", api),
				tableRow("api, GROUP_COMMIT=false, closed loop", sum[sideAPISingle]),
				tableRow("raw pgx, one command per transaction, closed loop", sum[sideRaw]),
				tableRow("raw pgx, group commit, closed loop", sum[sideRawBatched]),
				tableRow("floor: bare net/http server, canned answer, closed loop", sum[sideFloor]),
				tableRow(fmt.Sprintf("api, group commit, open loop %.0f/s", m.Half), m.Fixed),
				tableRow(fmt.Sprintf("api, GROUP_COMMIT=false, open loop %.0f/s", m.Half), m.SingleFixed),
				tableRow(fmt.Sprintf("raw pgx, one command per transaction, open loop %.0f/s", m.Half), m.RawFixed),
				tableRow(fmt.Sprintf("floor: bare net/http server, open loop %.0f/s", m.Half), m.FloorFixed),
				tableRow(fmt.Sprintf("floor: bare net/http server, open loop %.0f/s (the api's maximum)", api.Throughput), m.FloorAtMax),
			},
		}},
		Notes: []string{
			fmt.Sprintf("1-min load average %s at start, %s at end; api process CPU %.0f µs per command with group commit, %.0f without; a bare net/http server answering the same requests without the database (bench/internal/hop -answer) %.0f µs",
				m.Load0, m.Load1, m.apiCPUus(sideAPI), m.apiCPUus(sideAPISingle), m.apiCPUus(sideFloor)),
			fmt.Sprintf("%d clients, %v per side, %.0f%% updates / %.0f%% creates of products, pool %d, %d CPUs, api LOG_LEVEL=%s; the baselines call eventstore.Execute in-process (same SQL, no HTTP/JSON/validation), one command per transaction or through eventstore.Batcher with the api's defaults",
				s.Clients, s.Duration, 100*s.UpdateShare, 100-100*s.UpdateShare, s.MaxConns, runtime.NumCPU(), s.LogLevel),
		},
	}
}

func tableRow(name string, s loadgen.Summary) []string {
	ms := func(d time.Duration) string { return fmt.Sprintf("%.2f", stats.MS(d)) }
	return []string{name, fmt.Sprintf("%.0f", s.Throughput), ms(s.P50), ms(s.P99), ms(s.P999), fmt.Sprint(s.Errors)}
}
