package relay

import (
	"fmt"
	"time"

	"cqrsflow/bench/internal/result"
)

// Targets: the relay drains at least half as fast as a raw producer of the
// same records, and publishes within 100 ms at p99 under steady writes.
const (
	minRatio = 0.5
	maxLag99 = 100 * time.Millisecond
)

func resultOf(s settings, started time.Time, d drainResult, l lagResult) result.Result {
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	return result.Result{
		Part: "relay", Quick: s.Quick, StartedAt: started, Seconds: time.Since(started).Seconds(),
		Rows: []result.Row{
			result.Row{Name: fmt.Sprintf("relay drain throughput (%d rows, batch %d, %d workers)", s.Rows, s.BatchSize, s.Workers), Value: d.relayRate(), Unit: "events/s"}.
				WithBaseline("raw franz-go producer, same records and settings (fastest of 3)", d.rawRate()).
				WithTarget("ratio ≥ 0.5", d.ratio() >= minRatio),
			{Name: fmt.Sprintf("relay publish lag p50 @ %.0f writes/s", l.Writes.Throughput), Value: ms(l.p50()), Unit: "ms"},
			result.Row{Name: fmt.Sprintf("relay publish lag p99 @ %.0f writes/s", l.Writes.Throughput), Value: ms(l.p99()), Unit: "ms"}.
				WithTarget("p99 < 100 ms", l.p99() < maxLag99),
		},
		Notes: []string{
			fmt.Sprintf("lag = events.recorded_at → Kafka ack of the relay's record, all %d events of the phase; writes: %s", len(l.Sorted), l.Writes),
			fmt.Sprintf("%d partitions per topic, acks=all, idempotent producer, linger 0, default compression", s.Partitions),
		},
	}
}
