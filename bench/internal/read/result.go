package read

import (
	"fmt"
	"runtime"
	"strings"
	"time"

	"cqrsflow/bench/internal/result"
	"cqrsflow/bench/internal/stats"
	"cqrsflow/bench/loadgen"
)

// minRatio is the target of the search and get routes: the api serves at
// least this share of what Elasticsearch serves the same requests at.
const minRatio = 0.8

// targeted are the routes the target applies to; the list is reported.
var targeted = map[string]bool{"search": true, "get": true}

// routeMeasurement is one route's two sides.
type routeMeasurement struct {
	Route             route
	API, Direct       loadgen.Summary
	APICPU, DirectCPU cpu // CPU used during each side's slices
}

func (m routeMeasurement) ratio() float64 {
	if m.Direct.Throughput == 0 {
		return 0
	}
	return m.API.Throughput / m.Direct.Throughput
}

func (m routeMeasurement) pass() bool { return m.ratio() >= minRatio && m.API.Errors == 0 }

// perRequest is CPU seconds spread over ops requests, in µs.
func perRequest(secs float64, ops int) float64 {
	if ops == 0 {
		return 0
	}
	return secs * 1e6 / float64(ops)
}

func (m routeMeasurement) print() {
	ms := stats.MS
	fmt.Printf("%s: api %s vs %s\n", m.Route.name, m.Route.api, m.Route.direct)
	fmt.Printf("  api:    %.0f req/s, p50 %.2f ms, p99 %.2f ms, %d errors; CPU per request: api %.0f µs, elasticsearch %.0f µs, load generator %.0f µs\n",
		m.API.Throughput, ms(m.API.P50), ms(m.API.P99), m.API.Errors,
		perRequest(m.APICPU.API, m.API.Ops), perRequest(m.APICPU.ES, m.API.Ops), perRequest(m.APICPU.Bench, m.API.Ops))
	fmt.Printf("  direct: %.0f req/s, p50 %.2f ms, p99 %.2f ms, %d errors; CPU per request: elasticsearch %.0f µs, load generator %.0f µs\n",
		m.Direct.Throughput, ms(m.Direct.P50), ms(m.Direct.P99), m.Direct.Errors,
		perRequest(m.DirectCPU.ES, m.Direct.Ops), perRequest(m.DirectCPU.Bench, m.Direct.Ops))
	verdict := "no target"
	if targeted[m.Route.name] {
		verdict = fmt.Sprintf("target >= %.2f: %s", minRatio, result.PassWord(m.pass()))
	}
	fmt.Printf("  ratio api/direct: %.2f (%s); machine busy %.2f cores (api slices), %.2f (direct slices)\n",
		m.ratio(), verdict, m.APICPU.Machine/m.API.Elapsed.Seconds(), m.DirectCPU.Machine/m.Direct.Elapsed.Seconds())
}

// measurement is what the part measured.
type measurement struct {
	Routes       []routeMeasurement
	Load0, Load1 string // 1-minute load average at start and end
}

func (m measurement) print() {
	fmt.Printf("1-min load average: %s at start, %s at end (other processes on the machine skew the numbers)\n", m.Load0, m.Load1)
	for _, r := range m.Routes {
		fmt.Printf("%-7s ratio %.2f: api %.0f req/s (p99 %.2f ms, %.0f µs api CPU/req) vs direct %.0f req/s (p99 %.2f ms)\n", r.Route.name, r.ratio(),
			r.API.Throughput, stats.MS(r.API.P99), perRequest(r.APICPU.API, r.API.Ops), r.Direct.Throughput, stats.MS(r.Direct.P99))
	}
}

// rowNames name each route in the summary.
var rowNames = map[string]string{"search": "product search", "get": "product get by id", "list": "product list"}

// result is what the part hands to the report.
func (m measurement) result(s settings, started time.Time) result.Result {
	ms := stats.MS
	res := result.Result{Part: "read", Quick: s.Quick, StartedAt: started, Seconds: time.Since(started).Seconds()}
	table := result.Table{Title: "read side: API vs the same request straight to Elasticsearch",
		Columns: []string{"run", "req/s", "p50 ms", "p99 ms", "p99.9 ms", "errors", "api CPU µs/req", "ES CPU µs/req", "load gen CPU µs/req"}}
	for _, r := range m.Routes {
		name := rowNames[r.Route.name]
		baseline := "Elasticsearch, same request"
		row := result.Row{Name: fmt.Sprintf("api %s, %d conns", name, s.Clients), Value: r.API.Throughput, Unit: "req/s"}.
			WithBaseline(baseline, r.Direct.Throughput)
		if targeted[r.Route.name] {
			row = row.WithTarget(fmt.Sprintf("ratio ≥ %.1f", minRatio), r.pass())
		}
		res.Rows = append(res.Rows, row,
			result.Row{Name: fmt.Sprintf("api %s p99, %d conns", name, s.Clients), Value: ms(r.API.P99), Unit: "ms"}.
				WithBaseline(baseline, ms(r.Direct.P99)),
			result.Row{Name: "api CPU per " + name, Value: perRequest(r.APICPU.API, r.API.Ops), Unit: "µs"}.
				WithBaseline("Elasticsearch CPU per direct request", perRequest(r.DirectCPU.ES, r.Direct.Ops)))
		cell := func(secs float64, ops int) string { return fmt.Sprintf("%.0f", perRequest(secs, ops)) }
		table.Rows = append(table.Rows,
			append(summaryCells("api "+r.Route.api, r.API), cell(r.APICPU.API, r.API.Ops), cell(r.APICPU.ES, r.API.Ops), cell(r.APICPU.Bench, r.API.Ops)),
			append(summaryCells("direct "+r.Route.direct, r.Direct), "", cell(r.DirectCPU.ES, r.Direct.Ops), cell(r.DirectCPU.Bench, r.Direct.Ops)))
	}
	res.Tables = []result.Table{table}
	res.Notes = []string{
		fmt.Sprintf("1-min load average %s at start, %s at end", m.Load0, m.Load1),
		fmt.Sprintf("%d connections per side, %v per side and route in %d alternating slices, %d products, routes %s, %d CPUs, api LOG_LEVEL=%s; the direct side sends the api's own _search body (or GET _doc) to the same alias",
			s.Clients, s.Duration, s.Slices, s.Products, strings.Join(s.Routes, ","), runtime.NumCPU(), s.LogLevel),
	}
	return res
}

func summaryCells(name string, s loadgen.Summary) []string {
	ms := func(d time.Duration) string { return fmt.Sprintf("%.2f", stats.MS(d)) }
	return []string{name, fmt.Sprintf("%.0f", s.Throughput), ms(s.P50), ms(s.P99), ms(s.P999), fmt.Sprint(s.Errors)}
}
