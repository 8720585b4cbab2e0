package relay

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// The publish loops. With Workers = n > 1 there are n+1 of them, and
// either the one merged loop (index n) runs, serving every owned shard,
// or the n split loops do, loop w serving the shards with shard % n == w.
// Every claim carries a fixed cost (a statement of each kind, a produce
// request, the wake-ups), so at a steady rate one loop, claiming the
// writes of a whole linger window in one batch, costs a fraction of n
// loops each claiming their part of it; n loops pipeline claim, produce
// and delete when there is a backlog. The relay starts merged, splits
// when a merged batch comes back full, and merges again once no batch
// came back full for mergeAfter.
//
// A shard is served by one running loop at a time, so its rows are
// still published strictly in order: every batch runs under the read
// side of gate and checks under it that its loop runs, and a switch
// takes gate's write side, so it happens only between batches, with no
// batch of any loop in flight. A loop's low-water mark and suspects stay
// with it while it does not run (see lowWater: a mark stays true of its
// shards while another loop publishes them); the suspects move to the
// loops that run after the switch, so a suspect row stays out of
// batches and its aggregate's later rows stay held.
type loops struct {
	gate     sync.RWMutex
	merged   atomic.Bool  // the merged loop runs (written under gate)
	lastFull atomic.Int64 // unix nanoseconds of the last full batch of any loop
}

// mergeAfter is how long no batch must have come back full before the
// split loops hand over to the merged loop.
const mergeAfter = time.Second

// loopCount is the number of publish loops of a relay with workers
// Workers: workers+1 (the split loops and the merged one), or 1.
func loopCount(workers int) int {
	if workers == 1 {
		return 1
	}
	return workers + 1
}

// loopLabel is the worker label of loop w's metrics.
func (r *Relay) loopLabel(w int) string {
	if w == r.cfg.Workers {
		return "all"
	}
	return strconv.Itoa(w)
}

// mine reports whether loop w serves shard s.
func (r *Relay) mine(w int, s int16) bool {
	return w == r.cfg.Workers || int(s)%r.cfg.Workers == w
}

// running reports whether loop w runs now (read under gate).
func (r *Relay) running(w int) bool {
	if r.cfg.Workers == 1 {
		return true
	}
	return r.loops.merged.Load() == (w == r.cfg.Workers)
}

// loopOf is the running loop that serves shard s.
func (r *Relay) loopOf(s int) int {
	if r.cfg.Workers > 1 && r.loops.merged.Load() {
		return r.cfg.Workers
	}
	return s % r.cfg.Workers
}

// turn runs one batch of loop w, if it runs (ran), then lets the loops
// switch if the batch says so.
func (r *Relay) turn(ctx context.Context, w int) (more, ran bool, err error) {
	r.loops.gate.RLock()
	if !r.running(w) {
		r.loops.gate.RUnlock()
		return false, false, nil
	}
	r.applyReleases(ctx, w)
	more, err = r.batch(ctx, w)
	full := r.backlog[w]
	r.loops.gate.RUnlock()
	r.adapt(w, full, time.Now())
	return more, true, err
}

// adapt splits the loops after a full batch of the merged loop, and
// merges them after a batch of a split loop that was not full when no
// batch was full for mergeAfter. The merge waits for no batch: when one
// is in flight, the next batch that is not full tries again.
func (r *Relay) adapt(w int, full bool, now time.Time) {
	if r.cfg.Workers == 1 {
		return
	}
	if full {
		r.loops.lastFull.Store(now.UnixNano())
	}
	switch {
	case w == r.cfg.Workers && full:
		r.loops.gate.Lock()
		r.switchLoops(false)
		r.loops.gate.Unlock()
	case w < r.cfg.Workers && !full && now.Sub(time.Unix(0, r.loops.lastFull.Load())) >= mergeAfter:
		if !r.loops.gate.TryLock() {
			return
		}
		r.switchLoops(true)
		r.loops.gate.Unlock()
	default:
		return
	}
	r.poke()
}

// switchLoops makes the merged loop run (merged) or the split ones,
// under gate's write side: it moves the suspects of the loops that stop
// to the loops that serve their shards now. Split loops start with a
// claim planned for a backlog (they start because there is one).
func (r *Relay) switchLoops(merged bool) {
	if r.loops.merged.Load() == merged {
		return
	}
	n := r.cfg.Workers
	if merged {
		for w := range n {
			for id, s := range r.poison[w].rows {
				r.poison[n].rows[id] = s
				delete(r.poison[w].rows, id)
			}
		}
	} else {
		for id, s := range r.poison[n].rows {
			r.poison[int(s.shard)%n].rows[id] = s
			delete(r.poison[n].rows, id)
		}
		for w := range n {
			r.backlog[w] = true
		}
	}
	r.loops.merged.Store(merged)
	r.log.Debug("publish loops switched", "merged", merged)
}
