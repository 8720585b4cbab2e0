// Package relay publishes the transactional outbox to Kafka.
//
// # Claiming: shards and leases
//
// Every outbox row carries shard = hash(aggregate_id) & 63, so the rows of
// one aggregate share a shard. A relay publishes a shard only while it holds
// that shard's row in relay_leases (owner, epoch, expires_at). Leases are
// renewed every LeaseTTL/3; a free or expired lease is taken with epoch+1.
// Live relays heartbeat into relay_members, and each relay holds at most
// ceil(64 / live) shards: an over-quota relay hands the excess back between
// two batches, and an under-quota relay takes free shards, so N relays end
// up with 64/N shards each.
//
// Leases rather than advisory locks: a lease is a row anyone can read
// (who owns what, since when, in which epoch), it survives a connection
// blip without losing ownership, its epoch fences a previous owner in the
// conditional delete, and an operator can move a shard with one UPDATE. An
// advisory lock is tied to one session: invisible to the relay's other pool
// connections, lost silently with that connection, and without an epoch.
//
// # Never skipping a row
//
// Each batch reads the lowest-id rows of the owned shards above the
// worker's low-water mark, an id at or below which no row of its shards is
// pending or can still commit (lowWater explains why; the mark starts at 0
// and moves only over claims whose concurrent transactions have all ended;
// it is dropped when PostgreSQL restarts, recovers from a crash or fails
// over). A row is deleted only after Kafka acknowledged it. A transaction
// that commits a lower id after a higher one was published is still above
// the mark and found by the next claim. The API appends under the
// aggregate's head row lock, so one aggregate's rows become visible in
// version order. Rows are DELETEd by id after the ack (not marked): the
// outbox stays as small as the backlog, the mark keeps claims off the
// index entries of deleted rows, and the events table remains the durable
// history. Every RescanInterval a worker claims once from 0, so a row
// inserted outside that protocol below the mark is published late rather
// than never.
//
// # Order and fencing
//
// Within a batch every record of one key goes to the same partition through
// one idempotent producer, in id order; the next batch starts only after the
// previous one was acked and deleted. The delete runs in a transaction that
// locks the shard's lease row FOR SHARE and checks owner and epoch, so a
// relay whose lease was taken over deletes nothing of that shard, and the
// new owner republishes those rows. Before each claim the leases are
// re-checked and lost shards are dropped at once. A relay that lost a
// lease can still have one batch of that shard in flight (Kafka cannot be
// fenced by a Postgres lease): the consumer may then see a duplicate, or an
// older version replayed after a newer one, but never a missing event, and
// the first occurrences of each key's versions stay in order. The projector
// is idempotent (version-checked) and reports gaps.
//
// Partial failures: a batch's rows are deleted only up to the first failed
// row of each aggregate; later rows of that aggregate stay and are
// republished, in order, with the failed one. When Kafka is unreachable
// (timeouts, retriable errors) franz-go fails every later buffered record
// of the partition too, so nothing newer overtakes the failed record. A
// non-retriable rejection of one produce batch (INVALID_RECORD,
// MESSAGE_TOO_LARGE: a poison record) fails only that batch, so newer
// versions of the key can land before the failed one is republished; the
// projector sees that as a version gap and parks it, then gets the full
// run again from the failed version. Such a record keeps failing and is
// reported by cqrsflow_relay_publish_errors_total.
package relay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"cqrsflow/internal/backoff"
	"cqrsflow/internal/envelope"
)

// Config of a Relay. Zero values take the defaults noted.
type Config struct {
	ID          string // relay id, unique among live relays (required)
	TopicPrefix string // default envelope.DefaultTopicPrefix
	BatchSize   int    // rows per batch (per worker), default 1000
	// Workers is the number of publish loops; worker w serves the owned
	// shards with shard % Workers == w, one batch at a time, so a shard is
	// still published strictly in order while batches of different shards
	// overlap (claim, produce, ack and delete pipeline across workers).
	// Default 4.
	Workers      int
	PollInterval time.Duration // fallback poll when no NOTIFY arrives, default 250ms
	// Linger is how long an idle worker woken by a NOTIFY waits before it
	// claims, so one batch carries the writes of that window instead of
	// one claim + delete per write (0: claim at once). The binary uses
	// DefaultLinger.
	Linger   time.Duration
	LeaseTTL time.Duration // default 10s
	// RenewInterval is how often leases are renewed and rebalanced,
	// default LeaseTTL/3.
	RenewInterval time.Duration
	StatsInterval time.Duration // outbox gauges refresh, default 2s
	// ShutdownGrace bounds finishing the batch in flight after the context
	// is cancelled, default 15s.
	ShutdownGrace time.Duration
	MaxBackoff    time.Duration // cap of the retry backoff, default 5s
	// RescanInterval is how often each worker claims once from the start
	// of its shards instead of from its low-water mark (lowWater), so a
	// row inserted below the mark out of protocol is still published.
	// Default 1m.
	RescanInterval time.Duration
	// OnAck, if set, is called for every acked record (benchmarks).
	OnAck func(recordedAt, ackedAt time.Time)
}

// DefaultLinger is the outbox-relay binary's WAKE_LINGER. Measured with
// bench pipeline at 1 000 writes/s on 2 cores: 25ms cut the whole
// stack's CPU from 1.67 to 1.33 cores (the relay's PostgreSQL backends
// from 0.28 cores to below 0.14) and e2e p99 from ~1.3s to 1.14s, for
// commit → Kafka ack 8 → 16.5 ms mean; 5ms changed nothing measurable.
const DefaultLinger = 25 * time.Millisecond

func (c *Config) defaults() {
	if c.TopicPrefix == "" {
		c.TopicPrefix = envelope.DefaultTopicPrefix
	}
	if c.BatchSize <= 0 {
		c.BatchSize = 1000
	}
	if c.Workers <= 0 {
		c.Workers = 4
	}
	if c.PollInterval <= 0 {
		c.PollInterval = 250 * time.Millisecond
	}
	if c.LeaseTTL <= 0 {
		c.LeaseTTL = 10 * time.Second
	}
	if c.RenewInterval <= 0 {
		c.RenewInterval = c.LeaseTTL / 3
	}
	if c.StatsInterval <= 0 {
		c.StatsInterval = 2 * time.Second
	}
	if c.ShutdownGrace <= 0 {
		c.ShutdownGrace = 15 * time.Second
	}
	if c.MaxBackoff <= 0 {
		c.MaxBackoff = 5 * time.Second
	}
	if c.RescanInterval <= 0 {
		c.RescanInterval = time.Minute
	}
}

// ErrConfig is returned by New for an invalid Config.
var ErrConfig = errors.New("invalid relay config")

// Relay moves outbox rows to Kafka.
type Relay struct {
	cfg   Config
	pool  *pgxpool.Pool
	prod  Producer
	log   *slog.Logger
	m     *metrics
	store *store
	wake  []chan struct{} // one per worker
	low   []lowWater      // one per worker, used only by that worker
	// lowGauge is cqrsflow_relay_low_water_mark of each worker.
	lowGauge []prometheus.Gauge

	mu        sync.Mutex
	owned     map[int16]int64 // shard → epoch
	toRelease map[int16]bool
}

// New returns a relay. Metrics are registered on reg.
func New(cfg Config, pool *pgxpool.Pool, prod Producer, reg prometheus.Registerer, log *slog.Logger) (*Relay, error) {
	cfg.defaults()
	var errs []error
	if cfg.ID == "" {
		errs = append(errs, errors.New("relay id is empty"))
	}
	if cfg.Workers > NumShards {
		errs = append(errs, fmt.Errorf("workers %d: at most %d (one per shard)", cfg.Workers, NumShards))
	}
	if cfg.RenewInterval >= cfg.LeaseTTL {
		errs = append(errs, fmt.Errorf("renew interval %s must be shorter than the lease TTL %s", cfg.RenewInterval, cfg.LeaseTTL))
	}
	if pool == nil || prod == nil {
		errs = append(errs, errors.New("postgres pool and kafka producer are required"))
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%w: %w", ErrConfig, errors.Join(errs...))
	}
	r := &Relay{
		cfg: cfg, pool: pool, prod: prod,
		log:       log.With("component", "relay", "relay_id", cfg.ID),
		m:         newMetrics(reg),
		store:     &store{pool: pool, id: cfg.ID, ttl: cfg.LeaseTTL},
		owned:     map[int16]int64{},
		toRelease: map[int16]bool{},
	}
	for range cfg.Workers {
		r.wake = append(r.wake, make(chan struct{}, 1))
	}
	r.low = make([]lowWater, cfg.Workers)
	for w := range cfg.Workers {
		r.lowGauge = append(r.lowGauge, r.m.lowWater.WithLabelValues(strconv.Itoa(w)))
	}
	return r, nil
}

// Owned returns the shards this relay currently holds, sorted.
func (r *Relay) Owned() []int16 {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]int16, 0, len(r.owned))
	for s := range r.owned {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// Run publishes until ctx is cancelled, then finishes the batch in flight
// (acks and deletes it, bounded by ShutdownGrace), releases its leases and
// returns nil.
func (r *Relay) Run(ctx context.Context) error {
	bg, stopBg := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	for _, f := range []func(context.Context){r.leaseLoop, r.listenLoop, r.statsLoop} {
		wg.Add(1)
		go func() { defer wg.Done(); f(bg) }()
	}
	// Background loops stop when ctx is done, except the lease loop, which
	// keeps renewing until the last batch is finished.
	var workers sync.WaitGroup
	for w := range r.cfg.Workers {
		workers.Go(func() { r.publishLoop(ctx, w) })
	}
	workers.Wait()
	stopBg()
	wg.Wait()

	fin, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	r.mu.Lock()
	owned := r.owned
	r.owned = map[int16]int64{}
	r.mu.Unlock()
	r.m.ownedShards.Set(0)
	if err := r.store.release(fin, owned); err != nil {
		r.log.Warn("releasing leases on shutdown; they expire after the TTL", "err", err)
	}
	if err := r.store.leave(fin); err != nil {
		r.log.Warn("removing relay heartbeat on shutdown", "err", err)
	}
	r.log.Info("relay stopped", "released_shards", len(owned))
	return nil
}

func (r *Relay) poke() {
	for _, c := range r.wake {
		select {
		case c <- struct{}{}:
		default:
		}
	}
}

// wakeFor wakes the worker of the shard named by a notification payload
// (the API sends the shard number), or every worker for any other payload.
func (r *Relay) wakeFor(payload string) {
	s, err := strconv.Atoi(payload)
	if err != nil || s < 0 || s >= NumShards {
		r.poke()
		return
	}
	select {
	case r.wake[s%r.cfg.Workers] <- struct{}{}:
	default:
	}
}

// mine reports whether worker w serves shard s.
func (r *Relay) mine(w int, s int16) bool { return int(s)%r.cfg.Workers == w }

// backoff is the retry policy of the relay's loops: from 50 ms up to MaxBackoff.
func (r *Relay) backoff() backoff.Counter {
	return backoff.Counter{Policy: backoff.Policy{Min: 50 * time.Millisecond, Max: r.cfg.MaxBackoff}}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

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
			sleep(ctx, d)
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
				sleep(ctx, r.cfg.Linger)
			}
		case <-poll.C:
		}
	}
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

// batch claims, publishes and deletes one batch of worker w's shards; it
// returns the rows claimed.
func (r *Relay) batch(ctx context.Context, w int) (int, error) {
	r.mu.Lock()
	leases := make(map[int16]int64, len(r.owned))
	for s, e := range r.owned {
		if r.mine(w, s) && !r.toRelease[s] {
			leases[s] = e
		}
	}
	r.mu.Unlock()
	if len(leases) == 0 {
		return 0, nil
	}
	// Re-check the leases every batch: a taken-over shard stops at once.
	held, err := r.store.held(ctx, leases)
	if err != nil {
		return 0, err
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
	if len(held) == 0 {
		return 0, nil
	}
	shards, _ := split(held)
	t0 := time.Now()
	low := &r.low[w]
	defer func() { r.lowGauge[w].Set(float64(low.floor)) }()
	after := low.from(shards, t0, r.cfg.RescanInterval)
	rows, snap, err := r.store.claim(ctx, shards, after, r.cfg.BatchSize)
	if err != nil {
		return 0, err
	}
	if !low.sameServer(snap.server) {
		// PostgreSQL restarted, recovered from a crash or failed over
		// since the mark and its pending claims were set: rows may have
		// come back below the mark (a lost asynchronous delete) or the
		// sequence may hand out ids below it. Start over from 0 before
		// publishing anything (rows found now are not stragglers).
		low.reset() // keeps the server sameServer just recorded
		from := low.from(shards, t0, r.cfg.RescanInterval)
		if after > from {
			if rows, snap, err = r.store.claim(ctx, shards, from, r.cfg.BatchSize); err != nil {
				return 0, err
			}
		}
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
	recs, errs, ackedAt := publish(fctx, r.prod, r.cfg.TopicPrefix, rows)
	t2 := time.Now()
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
	var lost []int16
	var delXID uint64
	if len(ids) > 0 {
		if lost, delXID, err = r.deleteWithRetry(fctx, ids, held); err != nil {
			low.failed()
			return len(rows), err
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
	if r.log.Enabled(ctx, slog.LevelDebug) {
		r.log.Debug("batch", "worker", w, "rows", len(rows), "deleted", len(ids), "claim_ms", t1.Sub(t0).Milliseconds(),
			"publish_ms", t2.Sub(t1).Milliseconds(), "delete_ms", time.Since(t2).Milliseconds(), "low_water", low.floor, "pending_marks", len(low.pending))
	}
	if firstErr != nil {
		return len(rows), fmt.Errorf("%d of %d records not acked, they stay in the outbox: %w", failed, len(rows), firstErr)
	}
	return len(rows), nil
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
		if !sleep(ctx, d) {
			return nil, 0, err
		}
	}
}

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
	quota := (NumShards + live - 1) / live

	r.mu.Lock()
	var lost []int16
	for s, e := range r.owned {
		if re, ok := renewed[s]; !ok || re != e {
			lost = append(lost, s)
		}
	}
	for s, e := range renewed {
		if _, ok := r.owned[s]; !ok {
			r.owned[s] = e // acquired by a request whose answer we lost
		}
	}
	r.mu.Unlock()
	r.dropLost(lost, "renewal")

	r.mu.Lock()
	have := len(r.owned) - len(r.toRelease)
	if have > quota {
		// Hand back the highest shards; the publish loop releases them
		// between batches.
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
	}
	r.mu.Unlock()

	if have < quota {
		got, err := r.store.acquire(ctx, quota-have)
		if err != nil {
			return err
		}
		if len(got) > 0 {
			r.mu.Lock()
			for s, e := range got {
				r.owned[s] = e
			}
			n := len(r.owned)
			r.mu.Unlock()
			r.log.Info("acquired shards", "shards", len(got), "owned", n, "quota", quota, "live_relays", live)
			r.poke()
		}
	}
	r.mu.Lock()
	r.m.ownedShards.Set(float64(len(r.owned)))
	r.mu.Unlock()
	return nil
}

// listenLoop wakes the publish loop on every NOTIFY on NotifyChannel, on a
// dedicated connection, reconnecting with backoff. The poll timer covers
// missed notifications.
func (r *Relay) listenLoop(ctx context.Context) {
	bo := r.backoff()
	for ctx.Err() == nil {
		err := r.listenOnce(ctx)
		if ctx.Err() != nil {
			return
		}
		d := bo.Next()
		r.log.Warn("LISTEN connection failed; polling meanwhile", "err", err, "backoff", d.String())
		sleep(ctx, d)
	}
}

func (r *Relay) listenOnce(ctx context.Context) error {
	conn, err := pgx.ConnectConfig(ctx, r.pool.Config().ConnConfig.Copy())
	if err != nil {
		return fmt.Errorf("connecting for LISTEN: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "LISTEN "+NotifyChannel); err != nil {
		return fmt.Errorf("LISTEN %s: %w", NotifyChannel, err)
	}
	r.poke() // something may have been appended while not listening
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return fmt.Errorf("waiting for notification: %w", err)
		}
		r.wakeFor(n.Payload)
	}
}

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
