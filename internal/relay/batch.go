package relay

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"cqrsflow/internal/backoff"
)

// publishLoop is loop w: while it runs (see loops), one batch of its
// shards at a time, at once again while batches come back full,
// otherwise after a NOTIFY (plus Linger) or the poll interval.
func (r *Relay) publishLoop(ctx context.Context, w int) {
	bo := r.backoff()
	poll := time.NewTimer(r.cfg.PollInterval)
	defer poll.Stop()
	for ctx.Err() == nil {
		// The claim sees every row whose NOTIFY arrived by now: a wake-up
		// from before it (while the loop lingered or published) would only
		// make an empty claim.
		select {
		case <-r.wake[w]:
		default:
		}
		more, ran, err := r.turn(ctx, w)
		if !ran {
			// Another loop serves the shards: wait for a switch.
			r.waiting[w].Store(true)
			select {
			case <-ctx.Done():
			case <-r.wake[w]:
			}
			r.waiting[w].Store(false)
			continue
		}
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
		if more {
			continue // backlog, or rows to send again: next batch at once
		}
		poll.Reset(r.cfg.PollInterval)
		r.waiting[w].Store(true)
		select {
		case <-ctx.Done():
		case <-r.wake[w]:
			r.waiting[w].Store(false)
			if r.cfg.Linger > 0 {
				backoff.Sleep(ctx, r.cfg.Linger)
			}
		case <-poll.C:
		}
		r.waiting[w].Store(false)
	}
}

// batch claims, publishes and deletes one batch of worker w's shards. It
// reports whether the next batch should start at once: the batch was
// full or left rows to send again, and moved rows out of the outbox (a
// batch that only waits for suspects does not spin).
func (r *Relay) batch(ctx context.Context, w int) (more bool, err error) {
	low, p := &r.low[w], &r.poison[w]
	defer func() { r.lowGauge[w].Set(float64(low.floor)) }()
	t0 := time.Now()
	excl := p.exclusions()
	rows, snap, held, again, err := r.claim(ctx, w, low, excl, t0)
	if err != nil || held == nil {
		return again, err
	}
	r.backlog[w] = len(rows) >= r.cfg.BatchSize
	if len(rows) == 0 {
		p.prune(nil) // a suspect not claimed has left the outbox
		if len(excl) > 0 {
			low.failed() // the claim skipped rows that are still there
		} else {
			low.empty(snap)
		}
		return false, nil
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
	res := r.publishBatch(fctx, w, p, rows, t1)
	t2 := time.Now()
	left, err := r.finishAndAdvance(fctx, w, rows, res, held, snap, len(excl) > 0)
	if err != nil {
		return false, err
	}
	if r.log.Enabled(ctx, slog.LevelDebug) {
		r.log.Debug("batch", "worker", w, "rows", len(rows), "deleted", len(res.ids), "dead_lettered", len(res.dead),
			"claim_ms", t1.Sub(t0).Milliseconds(), "publish_ms", t2.Sub(t1).Milliseconds(), "delete_ms", time.Since(t2).Milliseconds(),
			"low_water", low.floor, "pending_marks", len(low.pending), "suspects", len(p.rows))
	}
	return left > 0 && (len(rows) >= r.cfg.BatchSize || res.retryNow), res.err
}

// leases returns the leases of worker w's shards that this relay holds
// (not marked for release). The claim checks them in the database: a
// shard taken over by another relay stops at once.
func (r *Relay) leases(w int) map[int16]int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	leases := make(map[int16]int64, len(r.owned))
	for s, e := range r.owned {
		if r.mine(w, s) && !r.toRelease[s] {
			leases[s] = e
		}
	}
	return leases
}

// claim reads the next rows of worker w's leased shards above its
// low-water mark low (from 0 after a change of PostgreSQL incarnation or
// of the redrive generation), skipping the rows held behind dead letters
// and behind the worker's suspects (excl). It returns the leases it
// read; when one of them was lost it drops it and returns no leases (the
// mark was computed for the shard set with it), and again says to claim
// at once.
func (r *Relay) claim(ctx context.Context, w int, low *lowWater, excl []exclusion, now time.Time) (rows []row, snap snapshot, held map[int16]int64, again bool, err error) {
	leases := r.leases(w)
	if len(leases) == 0 {
		return nil, snapshot{}, nil, false, nil
	}
	shards, _ := split(leases)
	after := low.from(shards, now, r.cfg.RescanInterval)
	c, err := r.store.claim(ctx, leases, after, r.cfg.BatchSize, excl, r.backlog[w])
	if err != nil {
		return nil, snapshot{}, nil, false, err
	}
	if len(c.lost) > 0 {
		r.dropLost(c.lost, "re-check in the claim")
		return nil, snapshot{}, nil, true, nil
	}
	if !low.sameOrigin(c.snap) {
		// PostgreSQL restarted, recovered from a crash or failed over
		// since the mark and its pending claims were set: rows may have
		// come back below the mark (a lost asynchronous delete) or the
		// sequence may hand out ids below it. Or dead letters were
		// retried or discarded: they and the rows held behind them may
		// lie below the mark. Start over from 0 before publishing
		// anything (rows found now are not stragglers).
		low.reset() // keeps the origin sameOrigin just recorded
		if from := low.from(shards, now, r.cfg.RescanInterval); after > from {
			if c, err = r.store.claim(ctx, leases, from, r.cfg.BatchSize, excl, true); err != nil {
				return nil, snapshot{}, nil, false, err
			}
			if len(c.lost) > 0 {
				r.dropLost(c.lost, "re-check in the claim")
				return nil, snapshot{}, nil, true, nil
			}
		}
	}
	return c.rows, c.snap, leases, false, nil
}

// finishAndAdvance deletes the acked rows and dead-letters the rows of
// res (claimed with snapshot snap; excluded says the claim skipped
// suspects' later rows) and moves worker w's low-water mark accordingly.
// It returns how many rows left the outbox.
func (r *Relay) finishAndAdvance(ctx context.Context, w int, rows []row, res batchResult, held map[int16]int64, snap snapshot, excluded bool) (int, error) {
	low := &r.low[w]
	var out finished
	if len(res.ids) > 0 || len(res.dead) > 0 {
		var err error
		if out, err = r.finishWithRetry(ctx, ackedRows(rows, res.ids), res.dead, held); err != nil {
			low.failed()
			return 0, err
		}
	}
	r.reportDead(w, res.dead, out.lost)
	if n := low.stragglers(res.ids); n > 0 {
		r.m.stragglers.Add(float64(n))
		r.log.Warn("published outbox rows found below the low-water mark: they were inserted without the append protocol (transaction id taken before the outbox id)",
			"worker", w, "rows", n, "mark", low.prev)
	}
	switch {
	case len(out.lost) > 0:
		// Rows of the lost shards stay in the outbox (for the new owner),
		// so the mark must not pass them, even if the lease comes back
		// before this worker's next batch.
		low.reset()
	case len(res.ids)+len(res.dead) == len(rows) && !excluded:
		low.done(rows[len(rows)-1].ID, len(rows) == r.cfg.BatchSize, out.xid, snap)
	default:
		// Rows stay in the outbox, or the claim skipped rows of suspects
		// that stay too: the mark must not pass them.
		low.failed()
	}
	return int(out.deleted + out.moved), nil
}

// finishWithRetry retries the conditional delete and dead-lettering
// while Postgres is unreachable: a row acked but not deleted would be
// published again.
func (r *Relay) finishWithRetry(ctx context.Context, acked []*row, dead []deadLetter, held map[int16]int64) (finished, error) {
	bo := r.backoff()
	for {
		out, err := r.store.finish(ctx, acked, dead, held)
		if err == nil {
			if len(out.lost) > 0 {
				r.dropLost(out.lost, "taken over before delete; acked rows left for the new owner (duplicates)")
			}
			return out, nil
		}
		if ctx.Err() != nil {
			return finished{}, fmt.Errorf("%w (acked rows stay in the outbox and will be republished)", err)
		}
		d := bo.Next()
		r.log.Warn("deleting acked rows failed; retrying", "err", err, "backoff", d.String())
		if !backoff.Sleep(ctx, d) {
			return finished{}, err
		}
	}
}

// ackedRows returns the rows of ids, a subsequence of rows (both in id order).
func ackedRows(rows []row, ids []int64) []*row {
	out := make([]*row, 0, len(ids))
	i := 0
	for _, id := range ids {
		for rows[i].ID != id {
			i++
		}
		out = append(out, &rows[i])
	}
	return out
}
