package relay

import (
	"context"
	"time"
)

// statsLoop refreshes the outbox gauges (pending rows, oldest row's age,
// dead letters, held and discarded rows) every StatsInterval. A failed
// read keeps the previous values: the next tick retries, and the gauges
// are not worth a warning per tick.
func (r *Relay) statsLoop(ctx context.Context) {
	t := time.NewTicker(r.cfg.StatsInterval)
	defer t.Stop()
	for {
		st, err := r.store.stats(ctx)
		if err == nil {
			r.m.pending.Set(float64(st.pending))
			r.m.oldestAge.Set(st.oldestAge)
			r.m.deadLetters.Set(float64(st.dead))
			r.m.heldRows.Set(float64(st.held))
			r.m.discarded.Set(float64(st.discarded))
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
