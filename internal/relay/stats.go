package relay

import (
	"context"
	"time"
)

// statsLoop refreshes the outbox gauges (pending rows, oldest row's age)
// every StatsInterval. A failed read keeps the previous values: the next
// tick retries, and the gauges are not worth a warning per tick.
func (r *Relay) statsLoop(ctx context.Context) {
	t := time.NewTicker(r.cfg.StatsInterval)
	defer t.Stop()
	for {
		pending, age, err := r.store.stats(ctx)
		if err == nil {
			r.m.pending.Set(float64(pending))
			r.m.oldestAge.Set(age)
		} else if ctx.Err() == nil {
			r.log.Debug("outbox stats failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
