package relay

import (
	"fmt"
	"strings"
	"time"

	"cqrsflow/bench/internal/result"
)

// Targets: the relay drains at least half as fast as a raw producer of the
// same records, publishes within 100 ms at p99 under steady writes, and
// at a steady rate costs at most 50 µs of CPU per event, its PostgreSQL
// backends included.
const (
	minRatio    = 0.5
	maxLag99    = 100 * time.Millisecond
	maxPerEvent = 50 * time.Microsecond
)

// outcome is what the phases that ran measured.
type outcome struct {
	drain  *drainResult
	lag    *lagResult
	steady []steadyStep
	floor  []steadyStep // -floor: the same rates with rawrelay
}

func resultOf(s settings, started time.Time, o outcome) result.Result {
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	res := result.Result{Part: "relay", Quick: s.Quick, StartedAt: started, Seconds: time.Since(started).Seconds()}
	if d := o.drain; d != nil {
		res.Rows = append(res.Rows, result.Row{Name: fmt.Sprintf("relay drain throughput (%d rows, batch %d, %d workers)", s.Rows, s.BatchSize, s.Workers), Value: d.relayRate(), Unit: "events/s"}.
			WithBaseline("raw franz-go producer, same records and settings (fastest of 3)", d.rawRate()).
			WithTarget("ratio ≥ 0.5", d.ratio() >= minRatio))
	}
	if l := o.lag; l != nil {
		res.Rows = append(res.Rows,
			result.Row{Name: fmt.Sprintf("relay publish lag p50 @ %.0f writes/s", l.Writes.Throughput), Value: ms(l.p50()), Unit: "ms"},
			result.Row{Name: fmt.Sprintf("relay publish lag p99 @ %.0f writes/s", l.Writes.Throughput), Value: ms(l.p99()), Unit: "ms"}.
				WithTarget("p99 < 100 ms", l.p99() < maxLag99))
		res.Notes = append(res.Notes, fmt.Sprintf("lag = events.recorded_at → Kafka ack of the relay's record, all %d events of the phase; writes: %s", len(l.Sorted), l.Writes))
	}
	var steps []string
	for _, st := range o.steady {
		row := result.Row{Name: fmt.Sprintf("relay CPU per event @ %.0f writes/s (outbox-relay + its PostgreSQL backends)", st.Rate), Value: micros(st.perEvent()), Unit: "µs"}
		steps = append(steps, fmt.Sprintf("%.0f/s: relay %.3f + backends %.3f cores", st.Writes.Throughput, st.Relay, st.Backends))
		if f := floorAt(o.floor, st.Rate); f != nil {
			row = row.WithBaseline("the floor (rawrelay: read, produce, delete per linger window) + its backends, same rate", micros(f.perEvent()))
			steps = append(steps, fmt.Sprintf("%.0f/s: floor %.3f + backends %.3f cores", f.Writes.Throughput, f.Relay, f.Backends))
		}
		res.Rows = append(res.Rows, row.WithTarget("≤ 50 µs", st.perEvent() <= maxPerEvent))
	}
	if len(steps) > 0 {
		res.Notes = append(res.Notes, fmt.Sprintf("steady phase: the outbox-relay binary as shipped in its own process, %s per rate; %s",
			s.SteadyStep, strings.Join(steps, "; ")))
	}
	if len(o.floor) > 0 {
		res.Notes = append(res.Notes, "floor: bench/internal/rawrelay in the relay's place after it, same schema, rates, linger, poll interval and batch size; no leases, low-water mark, dead letters, metrics or envelope")
	}
	res.Notes = append(res.Notes, fmt.Sprintf("%d partitions per topic, acks=all, idempotent producer, linger 0, default compression", s.Partitions))
	return res
}

// floorAt is the floor's step at rate, if it was measured.
func floorAt(floor []steadyStep, rate float64) *steadyStep {
	for i := range floor {
		if floor[i].Rate == rate && floor[i].Writes.Ops > 0 {
			return &floor[i]
		}
	}
	return nil
}
