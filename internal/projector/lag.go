package projector

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
)

// lagLoop updates consumer lag and sync lag every LagInterval.
func (r *Runner) lagLoop(ctx context.Context) {
	t := time.NewTicker(r.cfg.LagInterval)
	defer t.Stop()
	for {
		r.updateLag(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Lag returns the group's lag per partition of the topic: end offset minus
// committed offset (the start offset when nothing is committed).
func Lag(ctx context.Context, adm *kadm.Client, group, topic string) (map[int32]int64, error) {
	committed, err := adm.FetchOffsetsForTopics(ctx, group, topic)
	if err == nil {
		err = committed.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("fetching committed offsets of %s: %w", group, err)
	}
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("listing end offsets of %s: %w", topic, err)
	}
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("listing start offsets of %s: %w", topic, err)
	}
	out := map[int32]int64{}
	ends.Each(func(e kadm.ListedOffset) {
		at := int64(-1)
		if c, ok := committed.Lookup(topic, e.Partition); ok && c.Err == nil {
			at = c.At
		}
		if at < 0 {
			if s, ok := starts.Lookup(topic, e.Partition); ok {
				at = s.Offset
			}
		}
		out[e.Partition] = max(e.Offset-at, 0)
	})
	return out, nil
}

// updateLag sets cqrsflow_projector_consumer_lag_records per partition of
// the group, then the sync lag.
func (r *Runner) updateLag(ctx context.Context) {
	name := r.proj.Name()
	lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	lags, err := Lag(lctx, r.adm, r.cfg.Group, r.cfg.Topic)
	cancel()
	now := time.Now()
	if err != nil {
		if ctx.Err() == nil {
			r.log.Warn("computing consumer lag", "err", err)
		}
		// Unknown lag: do not pretend to be healthy; keep the sync lag
		// growing from what we know.
		r.setSyncLag(now, true)
		return
	}
	var total int64
	for p, l := range lags {
		r.m.ConsumerLag.WithLabelValues(name, r.cfg.Topic, strconv.Itoa(int(p))).Set(float64(l))
		total += l
	}
	r.setSyncLag(now, total > 0)
}

// setSyncLag sets cqrsflow_projector_sync_lag_seconds. Caught up (no
// consumer lag, nothing held) → 0. Behind → now minus the recorded_at of
// the oldest record this worker holds unfinished (batch in flight or
// parked); when it holds none (records wait in Kafka, e.g. this worker has
// no partitions or is stuck before fetching), now minus the later of the
// newest applied event's recorded_at and the moment the lag was first
// seen. Either way the value grows while records wait, so a stuck or
// stopped consumer never reports 0, and an idle projection that just got
// one new event does not report the whole idle time.
func (r *Runner) setSyncLag(now time.Time, behind bool) {
	held := r.proc.oldestHeld()
	if !behind && held.IsZero() {
		r.behindSince.Store(0)
		r.m.SyncLag.WithLabelValues(r.proj.Name()).Set(0)
		return
	}
	if r.behindSince.Load() == 0 {
		r.behindSince.Store(now.UnixNano())
	}
	ref := held
	if ref.IsZero() {
		ref = time.Unix(0, max(r.proc.lastApplied.Load(), r.behindSince.Load()))
	}
	r.m.SyncLag.WithLabelValues(r.proj.Name()).Set(max(now.Sub(ref).Seconds(), 0))
}
