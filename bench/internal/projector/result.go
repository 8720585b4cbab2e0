package projector

import (
	"fmt"
	"runtime"
	"time"

	"cqrsflow/bench/internal/result"
)

// minRatio is the target: the projector reaches at least 70% of the rate at
// which a raw loader builds the same final index.
const minRatio = 0.7

// measurement is what the part measured.
type measurement struct {
	Runs   []run
	Raw    rawLoads
	Events int
}

func (m measurement) rate(secs float64) float64 { return float64(m.Events) / secs }

// best is the fastest projector run.
func (m measurement) best() run {
	best := m.Runs[0]
	for _, r := range m.Runs {
		if r.rate > best.rate {
			best = r
		}
	}
	return best
}

func (m measurement) ratio() float64 { return m.best().rate / m.rate(m.Raw.Final) }

func (m measurement) print() {
	best := m.best()
	fmt.Printf("ratio projector (%d workers) / raw final-document load: %.2f (target >= 0.70: %s)\n", best.workers, m.ratio(), result.PassWord(m.ratio() >= minRatio))
	fmt.Printf("ratio projector (%d workers) / raw one-doc-per-event load: %.2f\n", best.workers, best.rate/m.rate(m.Raw.PerEvent))
	fmt.Printf("ratio projector (%d workers) / raw per-batch folded load (same write pattern): %.2f\n", best.workers, best.rate/m.rate(m.Raw.Folded))
}

func (m measurement) result(s settings, started time.Time) result.Result {
	best, rawFinal := m.best(), m.rate(m.Raw.Final)
	res := result.Result{Part: "projector", Quick: s.Quick, StartedAt: started, Seconds: time.Since(started).Seconds()}
	table := result.Table{Title: "projector vs raw _bulk", Columns: []string{"run", "seconds", "events/s"}}
	for _, r := range m.Runs {
		row := result.Row{Name: fmt.Sprintf("projector throughput, %d worker(s)", r.workers), Value: r.rate, Unit: "events/s"}.
			WithBaseline("raw _bulk of the final documents", rawFinal)
		if r == best {
			row = row.WithTarget("ratio ≥ 0.7", m.ratio() >= minRatio)
		}
		res.Rows = append(res.Rows, row)
		table.Rows = append(table.Rows, []string{fmt.Sprintf("projector, %d worker(s)", r.workers), fmt.Sprintf("%.2f", r.seconds), fmt.Sprintf("%.0f", r.rate)})
	}
	res.Rows = append(res.Rows, result.Row{Name: "raw _bulk, one document per event", Value: m.rate(m.Raw.PerEvent), Unit: "ops/s"},
		result.Row{Name: fmt.Sprintf("projector throughput, %d worker(s), vs same write pattern", best.workers), Value: best.rate, Unit: "events/s"}.
			WithBaseline("raw _bulk, per-batch folded documents", m.rate(m.Raw.Folded)))
	table.Rows = append(table.Rows,
		[]string{fmt.Sprintf("raw _bulk, %d final docs", m.Raw.FinalDocs), fmt.Sprintf("%.2f", m.Raw.Final), fmt.Sprintf("%.0f (equivalent)", rawFinal)},
		[]string{fmt.Sprintf("raw _bulk, %d per-event docs", m.Raw.PerEventDocs), fmt.Sprintf("%.2f", m.Raw.PerEvent), fmt.Sprintf("%.0f", m.rate(m.Raw.PerEvent))},
		[]string{fmt.Sprintf("raw _bulk, %d per-batch folded docs", m.Raw.FoldedDocs), fmt.Sprintf("%.2f", m.Raw.Folded), fmt.Sprintf("%.0f (equivalent)", m.rate(m.Raw.Folded))})
	res.Tables = []result.Table{table}
	// Lines of the report's throughput-vs-workers plot.
	perWorkers := result.Series{Name: "throughput_vs_workers/projector", XLabel: "projector workers", YLabel: "events/s"}
	rawLine := result.Series{Name: "throughput_vs_workers/raw _bulk, final documents", XLabel: "projector workers", YLabel: "events/s"}
	for _, r := range m.Runs {
		perWorkers.Points = append(perWorkers.Points, result.Point{X: float64(r.workers), Y: r.rate})
		rawLine.Points = append(rawLine.Points, result.Point{X: float64(r.workers), Y: rawFinal})
	}
	res.Series = append(res.Series, perWorkers, rawLine)
	res.Notes = []string{fmt.Sprintf("%d events over %d products, %d partitions, batches of at most %d events and %d MiB of records, %d CPUs shared with Kafka and Elasticsearch; workers run in one process, each its own franz-go client in one group; timed from start (includes the group join) until committed offsets reach the end",
		s.Events, s.Products, s.Partitions, s.Batch, s.BatchBytes>>20, runtime.NumCPU())}
	return res
}
