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

// Targets: the api keeps at least 60% of the raw transaction's throughput,
// and at half its maximum its p99 stays under 50 ms.
const (
	minRatio   = 0.6
	maxFixed99 = 50 * time.Millisecond
)

// measurement is what the part measured.
type measurement struct {
	API, Raw        loadgen.Summary // closed loop
	APICPUTicks     int64           // the api's CPU during its closed-loop slices
	Half            float64         // the open loop's rate: 50% of the api's maximum
	Fixed, RawFixed loadgen.Summary // open loop at Half
	Load0, Load1    string          // 1-minute load average at start and end
}

func (m measurement) ratio() float64 { return m.API.Throughput / m.Raw.Throughput }

func (m measurement) fixedOK() bool { return m.Fixed.P99 < maxFixed99 && m.Fixed.Errors == 0 }

// apiCPUus is the api process's CPU per command, in µs.
func (m measurement) apiCPUus() float64 {
	if m.API.Ops == 0 {
		return 0
	}
	return float64(m.APICPUTicks) / procs.ClockTicks * 1e6 / float64(m.API.Ops)
}

func (m measurement) printAPICPU() {
	if m.API.Ops > 0 {
		fmt.Printf("api process CPU: %.0f µs per command (%.2f cores)\n", m.apiCPUus(), float64(m.APICPUTicks)/procs.ClockTicks/m.API.Elapsed.Seconds())
	}
}

// print writes the comparison table and the verdicts.
func (m measurement) print() {
	ms := stats.MS
	fmt.Printf("1-min load average: %s at start, %s at end (other processes on the machine skew the numbers)\n", m.Load0, m.Load1)
	fmt.Println()
	fmt.Printf("%-34s %12s %12s\n", "", "api", "raw pgx")
	fmt.Printf("%-34s %12.0f %12.0f\n", "throughput (commands/s)", m.API.Throughput, m.Raw.Throughput)
	fmt.Printf("%-34s %12.2f %12.2f\n", "p50 latency (ms)", ms(m.API.P50), ms(m.Raw.P50))
	fmt.Printf("%-34s %12.2f %12.2f\n", "p99 latency (ms)", ms(m.API.P99), ms(m.Raw.P99))
	fmt.Printf("%-34s %12d %12d\n", "errors", m.API.Errors, m.Raw.Errors)
	fmt.Printf("ratio api/raw: %.2f (target >= 0.60: %s)\n", m.ratio(), result.PassWord(m.ratio() >= minRatio))
	fmt.Printf("p99 at %.0f commands/s (50%% of max, open loop): %.2f ms, p50 %.2f ms, %d errors (target p99 < 50 ms: %s); raw pgx at the same rate: p99 %.2f ms, p50 %.2f ms\n",
		m.Half, ms(m.Fixed.P99), ms(m.Fixed.P50), m.Fixed.Errors, result.PassWord(m.fixedOK()), ms(m.RawFixed.P99), ms(m.RawFixed.P50))
}

// result is what the part hands to the report.
func (m measurement) result(s settings, started time.Time) result.Result {
	ms := stats.MS
	const raw = "raw pgx, same transaction"
	return result.Result{Part: "write", Quick: s.Quick, StartedAt: started, Seconds: time.Since(started).Seconds(),
		Rows: []result.Row{
			result.Row{Name: fmt.Sprintf("api mixed commands, %d clients", s.Clients), Value: m.API.Throughput, Unit: "cmd/s"}.
				WithBaseline(raw, m.Raw.Throughput).WithTarget("ratio ≥ 0.6", m.ratio() >= minRatio),
			result.Row{Name: fmt.Sprintf("api p50 latency, %d clients", s.Clients), Value: ms(m.API.P50), Unit: "ms"}.
				WithBaseline(raw, ms(m.Raw.P50)),
			result.Row{Name: fmt.Sprintf("api p99 latency, %d clients", s.Clients), Value: ms(m.API.P99), Unit: "ms"}.
				WithBaseline(raw, ms(m.Raw.P99)),
			result.Row{Name: fmt.Sprintf("api p99 at 50%% of max (%.0f cmd/s, open loop)", m.Half), Value: ms(m.Fixed.P99), Unit: "ms"}.
				WithBaseline("raw pgx at the same rate", ms(m.RawFixed.P99)).WithTarget("p99 < 50 ms", m.fixedOK()),
		},
		Tables: []result.Table{{
			Title:   "write side: API vs raw pgx",
			Columns: []string{"run", "commands/s", "p50 ms", "p99 ms", "p99.9 ms", "errors"},
			Rows: [][]string{
				tableRow("api, closed loop", m.API),
				tableRow("raw pgx, closed loop", m.Raw),
				tableRow(fmt.Sprintf("api, open loop %.0f/s", m.Half), m.Fixed),
				tableRow(fmt.Sprintf("raw pgx, open loop %.0f/s", m.Half), m.RawFixed),
			},
		}},
		Notes: []string{
			fmt.Sprintf("1-min load average %s at start, %s at end; api process CPU %.0f µs per command", m.Load0, m.Load1, m.apiCPUus()),
			fmt.Sprintf("%d clients, %v per side, %.0f%% updates / %.0f%% creates of products, pool %d, %d CPUs, api LOG_LEVEL=%s; the baseline calls eventstore.Execute in-process (same SQL, no HTTP/JSON/validation)",
				s.Clients, s.Duration, 100*s.UpdateShare, 100-100*s.UpdateShare, s.MaxConns, runtime.NumCPU(), s.LogLevel),
		},
	}
}

func tableRow(name string, s loadgen.Summary) []string {
	ms := func(d time.Duration) string { return fmt.Sprintf("%.2f", stats.MS(d)) }
	return []string{name, fmt.Sprintf("%.0f", s.Throughput), ms(s.P50), ms(s.P99), ms(s.P999), fmt.Sprint(s.Errors)}
}
