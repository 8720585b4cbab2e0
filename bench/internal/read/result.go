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

// routeMeasurement is one route's sides; Hop is empty without -hop.
type routeMeasurement struct {
	Route                     route
	API, Direct, Hop          loadgen.Summary
	APICPU, DirectCPU, HopCPU cpu // CPU used during each side's slices
	// Batches is the api's histogram of reads per request to
	// Elasticsearch during its slices (empty: the route's reads are not
	// batched); BatchErr why it could not be read.
	Batches  stats.Histogram
	BatchErr error
}

func (m routeMeasurement) ratio() float64 { return ratio(m.API, m.Direct) }

// floor is the hop's share of what Elasticsearch serves directly: the
// most any Go HTTP service between the two could reach here.
func (m routeMeasurement) floor() float64 { return ratio(m.Hop, m.Direct) }

func (m routeMeasurement) hasHop() bool { return m.Hop.Ops > 0 || m.Hop.Errors > 0 }

func ratio(a, b loadgen.Summary) float64 {
	if b.Throughput == 0 {
		return 0
	}
	return a.Throughput / b.Throughput
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
	if m.hasHop() {
		fmt.Printf("  hop:    %.0f req/s, p50 %.2f ms, p99 %.2f ms, %d errors; CPU per request: hop %.0f µs, elasticsearch %.0f µs, load generator %.0f µs\n",
			m.Hop.Throughput, ms(m.Hop.P50), ms(m.Hop.P99), m.Hop.Errors,
			perRequest(m.HopCPU.Hop, m.Hop.Ops), perRequest(m.HopCPU.ES, m.Hop.Ops), perRequest(m.HopCPU.Bench, m.Hop.Ops))
		fmt.Printf("  floor (hop/direct): %.2f; api/hop: %.2f\n", m.floor(), ratio(m.API, m.Hop))
	}
	switch {
	case m.BatchErr != nil:
		fmt.Printf("  api batches: not read (%v)\n", m.BatchErr)
	case m.Batches.Count > 0:
		fmt.Printf("  api batches: %.0f reads in %.0f requests to Elasticsearch, %.1f per request\n",
			m.Batches.Sum, m.Batches.Count, m.Batches.Mean())
	}
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
		fmt.Printf("%-7s ratio %.2f: api %.0f req/s (p99 %.2f ms, %.0f µs api CPU/req) vs direct %.0f req/s (p99 %.2f ms)", r.Route.name, r.ratio(),
			r.API.Throughput, stats.MS(r.API.P99), perRequest(r.APICPU.API, r.API.Ops), r.Direct.Throughput, stats.MS(r.Direct.P99))
		if r.hasHop() {
			fmt.Printf("; floor %.2f (hop %.0f req/s, %.0f µs hop CPU/req)", r.floor(), r.Hop.Throughput, perRequest(r.HopCPU.Hop, r.Hop.Ops))
		}
		fmt.Println()
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
		if r.hasHop() {
			res.Rows = append(res.Rows, result.Row{Name: fmt.Sprintf("floor: bare Go HTTP hop, %s, %d conns", name, s.Clients), Value: r.Hop.Throughput, Unit: "req/s"}.
				WithBaseline(baseline, r.Direct.Throughput))
			table.Rows = append(table.Rows,
				append(summaryCells("hop (floor) "+r.Route.direct, r.Hop), cell(r.HopCPU.Hop, r.Hop.Ops), cell(r.HopCPU.ES, r.Hop.Ops), cell(r.HopCPU.Bench, r.Hop.Ops)))
		}
	}
	res.Tables = []result.Table{table}
	res.Notes = []string{
		fmt.Sprintf("1-min load average %s at start, %s at end", m.Load0, m.Load1),
		fmt.Sprintf("%d connections per side, %v per side and route in %d alternating slices, %d products, routes %s, %d CPUs, api LOG_LEVEL=%s; the direct side sends the api's own _search body (or GET _doc) to the same alias; the floor (hop) side sends the direct side's requests through a bare net/http forwarder (bench/internal/hop) that copies them to Elasticsearch and the answers back unread",
			s.Clients, s.Duration, s.Slices, s.Products, strings.Join(s.Routes, ","), runtime.NumCPU(), s.LogLevel),
	}
	return res
}

func summaryCells(name string, s loadgen.Summary) []string {
	ms := func(d time.Duration) string { return fmt.Sprintf("%.2f", stats.MS(d)) }
	return []string{name, fmt.Sprintf("%.0f", s.Throughput), ms(s.P50), ms(s.P99), ms(s.P999), fmt.Sprint(s.Errors)}
}
