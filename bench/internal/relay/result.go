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
		us := float64(st.perEvent().Nanoseconds()) / 1000
		res.Rows = append(res.Rows, result.Row{Name: fmt.Sprintf("relay CPU per event @ %.0f writes/s (outbox-relay + its PostgreSQL backends)", st.Rate), Value: us, Unit: "µs"}.
			WithTarget("≤ 50 µs", st.perEvent() <= maxPerEvent))
		steps = append(steps, fmt.Sprintf("%.0f/s: relay %.3f + backends %.3f cores", st.Writes.Throughput, st.Relay, st.Backends))
	}
	if len(steps) > 0 {
		res.Notes = append(res.Notes, fmt.Sprintf("steady phase: the outbox-relay binary as shipped in its own process, %s per rate; %s",
			s.SteadyStep, strings.Join(steps, "; ")))
	}
	res.Notes = append(res.Notes, fmt.Sprintf("%d partitions per topic, acks=all, idempotent producer, linger 0, default compression", s.Partitions))
	return res
}
