package relay

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"cqrsflow/internal/backoff"
	"cqrsflow/internal/envelope"
)

// publishLoop is worker w: one batch of its shards at a time, at once
// again while batches come back full, otherwise after a NOTIFY (plus
// Linger) or the poll interval.
func (r *Relay) publishLoop(ctx context.Context, w int) {
	bo := r.backoff()
	poll := time.NewTimer(r.cfg.PollInterval)
	defer poll.Stop()
	for ctx.Err() == nil {
		r.applyReleases(ctx, w)
		n, err := r.batch(ctx, w)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			d := bo.Next()
			r.log.Warn("batch failed; retrying", "worker", w, "err", err, "backoff", d.String())
			backoff.Sleep(ctx, d)
			continue
		}
		bo.Reset()
		if n >= r.cfg.BatchSize {
			continue // backlog: next batch at once
		}
		poll.Reset(r.cfg.PollInterval)
		select {
		case <-ctx.Done():
		case <-r.wake[w]:
			if r.cfg.Linger > 0 {
				backoff.Sleep(ctx, r.cfg.Linger)
			}
		case <-poll.C:
		}
	}
}

// batch claims, publishes and deletes one batch of worker w's shards; it
// returns the rows claimed.
func (r *Relay) batch(ctx context.Context, w int) (int, error) {
	held, err := r.heldLeases(ctx, w)
	if err != nil || len(held) == 0 {
		return 0, err
	}
	low := &r.low[w]
	defer func() { r.lowGauge[w].Set(float64(low.floor)) }()
	t0 := time.Now()
	rows, snap, err := r.claim(ctx, low, held, t0)
	if err != nil {
		return 0, err
	}
	if len(rows) == 0 {
		low.empty(snap)
		return 0, nil
	}
	r.m.batches.Inc()
	r.m.batchRecords.Observe(float64(len(rows)))

	// From here on the batch is finished even if ctx is cancelled
	// (SIGTERM), bounded by ShutdownGrace.
	fctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	stop := context.AfterFunc(ctx, func() { time.AfterFunc(r.cfg.ShutdownGrace, cancel) })
	defer stop()

	t1 := time.Now()
	ids, pubErr := r.publishRows(fctx, rows)
	t2 := time.Now()
	if err := r.deleteAndAdvance(fctx, w, rows, ids, held, snap); err != nil {
		return len(rows), err
	}
	if r.log.Enabled(ctx, slog.LevelDebug) {
		r.log.Debug("batch", "worker", w, "rows", len(rows), "deleted", len(ids), "claim_ms", t1.Sub(t0).Milliseconds(),
			"publish_ms", t2.Sub(t1).Milliseconds(), "delete_ms", time.Since(t2).Milliseconds(), "low_water", low.floor, "pending_marks", len(low.pending))
	}
	return len(rows), pubErr
}

// heldLeases returns the leases of worker w's shards that this relay
// still holds. They are re-checked in the database before every claim, so
// a shard taken over by another relay stops at once.
func (r *Relay) heldLeases(ctx context.Context, w int) (map[int16]int64, error) {
	r.mu.Lock()
	leases := make(map[int16]int64, len(r.owned))
	for s, e := range r.owned {
		if r.mine(w, s) && !r.toRelease[s] {
			leases[s] = e
		}
	}
	r.mu.Unlock()
	if len(leases) == 0 {
		return nil, nil
	}
	held, err := r.store.held(ctx, leases)
	if err != nil {
		return nil, err
	}
	if len(held) < len(leases) {
		var lost []int16
		for s := range leases {
			if _, ok := held[s]; !ok {
				lost = append(lost, s)
			}
		}
		r.dropLost(lost, "re-check before claim")
	}
	return held, nil
}

// claim reads the next rows of the held shards above the worker's
// low-water mark low (from 0 after a change of PostgreSQL incarnation).
func (r *Relay) claim(ctx context.Context, low *lowWater, held map[int16]int64, now time.Time) ([]row, snapshot, error) {
	shards, _ := split(held)
	after := low.from(shards, now, r.cfg.RescanInterval)
	rows, snap, err := r.store.claim(ctx, shards, after, r.cfg.BatchSize)
	if err != nil {
		return nil, snapshot{}, err
	}
	if low.sameServer(snap.server) {
		return rows, snap, nil
	}
	// PostgreSQL restarted, recovered from a crash or failed over since
	// the mark and its pending claims were set: rows may have come back
	// below the mark (a lost asynchronous delete) or the sequence may hand
	// out ids below it. Start over from 0 before publishing anything (rows
	// found now are not stragglers).
	low.reset() // keeps the server sameServer just recorded
	if from := low.from(shards, now, r.cfg.RescanInterval); after > from {
		return r.store.claim(ctx, shards, from, r.cfg.BatchSize)
	}
	return rows, snap, nil
}

// publishRows publishes rows, counts every outcome, and returns the ids
// that may leave the outbox (deletable) with an error naming the first
// record Kafka did not acknowledge.
func (r *Relay) publishRows(ctx context.Context, rows []row) ([]int64, error) {
	recs, errs, ackedAt := publish(ctx, r.prod, r.cfg.TopicPrefix, rows)
	var firstErr error
	failed := 0
	for i := range rows {
		topic := envelope.Topic(r.cfg.TopicPrefix, rows[i].AggregateType)
		if recs[i] != nil {
			topic = recs[i].Topic
		}
		if errs[i] != nil {
			failed++
			r.m.errors.WithLabelValues(topic).Inc()
			if firstErr == nil {
				firstErr = fmt.Errorf("publishing event %s (outbox id %d): %w", rows[i].EventID, rows[i].ID, errs[i])
			}
			continue
		}
		r.m.published.WithLabelValues(topic).Inc()
		r.m.publishLag.Observe(ackedAt[i].Sub(rows[i].RecordedAt).Seconds())
		if r.cfg.OnAck != nil {
			r.cfg.OnAck(rows[i].RecordedAt, ackedAt[i])
		}
	}
	ids := deletable(rows, errs)
	if firstErr != nil {
		return ids, fmt.Errorf("%d of %d records not acked, they stay in the outbox: %w", failed, len(rows), firstErr)
	}
	return ids, nil
}

// deleteAndAdvance deletes the acked rows ids of the claimed rows (snapshot
// snap) and moves worker w's low-water mark accordingly.
func (r *Relay) deleteAndAdvance(ctx context.Context, w int, rows []row, ids []int64, held map[int16]int64, snap snapshot) error {
	low := &r.low[w]
	var lost []int16
	var delXID uint64
	if len(ids) > 0 {
		var err error
		if lost, delXID, err = r.deleteWithRetry(ctx, ids, held); err != nil {
			low.failed()
			return err
		}
	}
	if n := low.stragglers(ids); n > 0 {
		r.m.stragglers.Add(float64(n))
		r.log.Warn("published outbox rows found below the low-water mark: they were inserted without the append protocol (transaction id taken before the outbox id)",
			"worker", w, "rows", n, "mark", low.prev)
	}
	switch {
	case len(lost) > 0:
		// Rows of the lost shards stay in the outbox (for the new owner),
		// so the mark must not pass them, even if the lease comes back
		// before this worker's next batch.
		low.reset()
	case len(ids) == len(rows):
		low.done(rows[len(rows)-1].ID, len(rows) == r.cfg.BatchSize, delXID, snap)
	default:
		low.failed()
	}
	return nil
}

// deleteWithRetry retries the conditional delete while Postgres is
// unreachable: a row acked but not deleted would be published again.
// It returns the shards whose lease was gone and the deleting
// transaction's id.
func (r *Relay) deleteWithRetry(ctx context.Context, ids []int64, held map[int16]int64) (lost []int16, xid uint64, err error) {
	bo := r.backoff()
	for {
		_, lost, xid, err := r.store.deleteAcked(ctx, ids, held)
		if err == nil {
			if len(lost) > 0 {
				r.dropLost(lost, "taken over before delete; acked rows left for the new owner (duplicates)")
			}
			return lost, xid, nil
		}
		if ctx.Err() != nil {
			return nil, 0, fmt.Errorf("%w (acked rows stay in the outbox and will be republished)", err)
		}
		d := bo.Next()
		r.log.Warn("deleting acked rows failed; retrying", "err", err, "backoff", d.String())
		if !backoff.Sleep(ctx, d) {
			return nil, 0, err
		}
	}
}
