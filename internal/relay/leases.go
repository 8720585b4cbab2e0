package relay

import (
	"context"
	"sort"
	"time"

	"cqrsflow/internal/outbox"
)

// leaseLoop heartbeats, renews, acquires up to quota and marks excess
// shards for release, every RenewInterval.
func (r *Relay) leaseLoop(ctx context.Context) {
	if adopted, err := r.store.adopt(ctx); err == nil && len(adopted) > 0 {
		r.mu.Lock()
		for s, e := range adopted {
			r.owned[s] = e
		}
		r.mu.Unlock()
		r.log.Info("adopted leases of a previous process with this relay id", "shards", len(adopted))
	}
	lastOK := time.Now()
	t := time.NewTicker(r.cfg.RenewInterval)
	defer t.Stop()
	for {
		if err := r.leaseTick(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			r.log.Warn("lease renewal failed", "err", err)
			if time.Since(lastOK) >= r.cfg.LeaseTTL {
				// Cannot prove ownership any more: stop publishing everything.
				r.dropLost(r.Owned(), "renewal failing for a whole lease TTL")
			}
		} else {
			lastOK = time.Now()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// leaseTick is one round of the lease loop: heartbeat, renew, then move
// toward this relay's quota of the shards, ceil(ShardCount / live relays).
func (r *Relay) leaseTick(ctx context.Context) error {
	live, err := r.store.heartbeat(ctx)
	if err != nil {
		return err
	}
	live = max(live, 1)
	r.m.liveRelays.Set(float64(live))
	renewed, err := r.store.renew(ctx)
	if err != nil {
		return err
	}
	r.reconcile(renewed)
	quota := (outbox.ShardCount + live - 1) / live
	if have := r.markExcess(quota); have < quota {
		if err := r.acquire(ctx, quota-have, quota, live); err != nil {
			return err
		}
	}
	r.mu.Lock()
	r.m.ownedShards.Set(float64(len(r.owned)))
	r.mu.Unlock()
	return nil
}

// reconcile makes the owned shards those the renewal returned: a shard
// not renewed (or renewed in another epoch) was lost, and a renewed shard
// not owned was acquired by a request whose answer was lost.
func (r *Relay) reconcile(renewed map[int16]int64) {
	r.mu.Lock()
	var lost []int16
	for s, e := range r.owned {
		if re, ok := renewed[s]; !ok || re != e {
			lost = append(lost, s)
		}
	}
	for s, e := range renewed {
		if _, ok := r.owned[s]; !ok {
			r.owned[s] = e
		}
	}
	r.mu.Unlock()
	r.dropLost(lost, "renewal")
}

// markExcess marks the highest shards above quota for release (the
// publish workers hand them back between batches, applyReleases) and
// returns how many shards the relay keeps.
func (r *Relay) markExcess(quota int) (have int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	have = len(r.owned) - len(r.toRelease)
	if have <= quota {
		return have
	}
	cur := make([]int16, 0, len(r.owned))
	for s := range r.owned {
		if !r.toRelease[s] {
			cur = append(cur, s)
		}
	}
	sort.Slice(cur, func(i, j int) bool { return cur[i] > cur[j] })
	for _, s := range cur[:have-quota] {
		r.toRelease[s] = true
	}
	return have
}

// acquire takes up to n free shards and wakes the workers for them.
func (r *Relay) acquire(ctx context.Context, n, quota, live int) error {
	got, err := r.store.acquire(ctx, n)
	if err != nil {
		return err
	}
	if len(got) == 0 {
		return nil
	}
	r.mu.Lock()
	for s, e := range got {
		r.owned[s] = e
	}
	owned := len(r.owned)
	r.mu.Unlock()
	r.log.Info("acquired shards", "shards", len(got), "owned", owned, "quota", quota, "live_relays", live)
	r.poke()
	return nil
}

// applyReleases hands back worker w's shards that the lease loop found
// above quota. It runs between two batches of that worker, so no in-flight
// row of those shards is left acked but undeleted.
func (r *Relay) applyReleases(ctx context.Context, w int) {
	r.mu.Lock()
	rel := map[int16]int64{}
	for s := range r.toRelease {
		if !r.mine(w, s) {
			continue
		}
		if e, ok := r.owned[s]; ok {
			rel[s] = e
			delete(r.owned, s)
		}
		delete(r.toRelease, s)
	}
	n := len(r.owned)
	r.mu.Unlock()
	if len(rel) == 0 {
		return
	}
	r.m.ownedShards.Set(float64(n))
	if err := r.store.release(ctx, rel); err != nil {
		r.log.Warn("releasing leases for rebalance; they expire after the TTL", "err", err)
		return
	}
	r.log.Info("released shards for rebalance", "shards", len(rel), "owned", n)
}

// dropLost forgets leases this relay no longer holds.
func (r *Relay) dropLost(shards []int16, why string) {
	if len(shards) == 0 {
		return
	}
	r.mu.Lock()
	dropped := 0
	for _, s := range shards {
		if _, ok := r.owned[s]; ok {
			delete(r.owned, s)
			dropped++
		}
	}
	n := len(r.owned)
	r.mu.Unlock()
	if dropped == 0 {
		return
	}
	r.m.leasesLost.Add(float64(dropped))
	r.m.ownedShards.Set(float64(n))
	r.log.Warn("lease lost; stopped publishing those shards", "shards", shards, "reason", why, "owned", n)
}
