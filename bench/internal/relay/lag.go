package relay

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"cqrsflow/bench/loadgen"
	"cqrsflow/internal/testenv"
)

// lagResult is the lag phase: the writes and every one's publish lag.
type lagResult struct {
	Writes loadgen.Summary
	Sorted []time.Duration // recorded_at → ack of each write, ascending
}

func (l lagResult) p50() time.Duration { return loadgen.Percentile(l.Sorted, 0.50) }
func (l lagResult) p99() time.Duration { return loadgen.Percentile(l.Sorted, 0.99) }
func (l lagResult) max() time.Duration { return l.Sorted[len(l.Sorted)-1] }

func (l lagResult) print() {
	r := func(d time.Duration) time.Duration { return d.Round(10 * time.Microsecond) }
	fmt.Printf("  writes: %s\n", l.Writes)
	fmt.Printf("  publish lag (recorded_at → ack) over %d events: p50 %s p99 %s max %s (target p99 < 100ms)\n",
		len(l.Sorted), r(l.p50()), r(l.p99()), r(l.max()))
}

// lagWait bounds how long the phase waits, after its writes, for the relay
// to publish them.
const lagWait = 30 * time.Second

// lag runs a relay configured as the binary ships while writes arrive at
// a steady rate through the event store, and records each write's publish
// lag.
func (b *bench) lag(ctx context.Context) (lagResult, error) {
	var (
		mu   sync.Mutex
		lags []time.Duration
	)
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(lags) }
	stop, err := b.startRelay(ctx, relayRun{id: "bench-relay-lag", asShipped: true, onAck: func(recordedAt, ackedAt time.Time) {
		mu.Lock()
		lags = append(lags, ackedAt.Sub(recordedAt))
		mu.Unlock()
	}})
	if err != nil {
		return lagResult{}, err
	}
	app := newAppender(b.pool, 5000, b.s.PayloadBytes)
	fmt.Printf("  lag phase: %.0f writes/s for %s through the event store, relay running\n", b.s.Rate, b.s.LagDuration)
	ws := loadgen.OpenLoop(ctx, b.s.Rate, b.s.LagDuration, 64, app.append)
	_ = testenv.Until(ctx, lagWait, 20*time.Millisecond, "the relay to publish the phase's writes", func() (bool, error) {
		return count() >= ws.Ops, nil
	})
	app.close()
	stop()
	mu.Lock()
	sorted := slices.Clone(lags)
	mu.Unlock()
	slices.Sort(sorted)
	if len(sorted) < ws.Ops {
		return lagResult{}, fmt.Errorf("lag phase: only %d of %d writes were published within %s", len(sorted), ws.Ops, lagWait)
	}
	return lagResult{Writes: ws, Sorted: sorted}, nil
}
