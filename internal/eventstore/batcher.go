package eventstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// ErrClosed: the Batcher was closed before the command was queued. Nothing
// ran; IsUnavailable reports it (the api is shutting down).
var ErrClosed = errors.New("eventstore: batcher closed")

// BatchConfig bounds group commit.
type BatchConfig struct {
	// MaxBatch is the most commands one transaction carries.
	MaxBatch int
	// Committers is how many transactions (batches, or commands run
	// alone) may be in flight at once, each on its own connection: while
	// one waits for PostgreSQL (locks, the WAL flush of its COMMIT),
	// another can run.
	Committers int
	// Linger, when > 0, is how long a committer whose previous batch was
	// full waits for more commands before sending the next one. It never
	// delays a command that finds the queue empty and a committer idle.
	Linger time.Duration
	// Timeout bounds one batch's database work.
	Timeout time.Duration
}

// DefaultBatchConfig is what the api uses unless configured otherwise.
func DefaultBatchConfig() BatchConfig {
	return BatchConfig{MaxBatch: 64, Committers: 4, Timeout: 5 * time.Second}
}

// Validate reports every out-of-range field at once.
func (c BatchConfig) Validate() error {
	var errs []error
	if c.MaxBatch < 1 || c.MaxBatch > maxBatchLimit {
		errs = append(errs, fmt.Errorf("max batch %d: must be 1..%d", c.MaxBatch, maxBatchLimit))
	}
	if c.Committers < 1 || c.Committers > 64 {
		errs = append(errs, fmt.Errorf("committers %d: must be 1..64", c.Committers))
	}
	if c.Linger < 0 || c.Linger > time.Second {
		errs = append(errs, fmt.Errorf("linger %v: must be 0..1s", c.Linger))
	}
	if c.Timeout <= 0 {
		errs = append(errs, fmt.Errorf("timeout %v: must be > 0", c.Timeout))
	}
	return errors.Join(errs...)
}

// maxBatchLimit keeps one batch's arrays and its transaction modest: a
// bigger batch only makes the commands at its end wait longer.
const maxBatchLimit = 1024

// BatchStats counts what a Batcher did, for tests and the benchmark.
type BatchStats struct {
	Batches  int64 // transactions tried, a command run alone counting as one
	Commands int64 // commands that went into them
	// Fallbacks are batches PostgreSQL rejected as a whole (a deadlock, a
	// duplicate create); their commands were run again one by one.
	Fallbacks int64
	// Unknown are batches whose COMMIT may or may not have happened (the
	// connection broke while it was on the way); every command of such a
	// batch was answered with ErrCommitUnknown.
	Unknown int64
}

// Batcher is group commit in front of a Store: it has the Store's Execute
// and runs the commands that arrive while a transaction is in flight
// together in the next one. See the package doc for the transaction and
// the guarantees; the queueing rules are:
//
//   - a command that finds nothing in flight and nobody waiting runs at
//     once, alone, on its caller's goroutine (no wait when idle);
//     commands that arrive while transactions are in flight queue, and a
//     committer takes up to MaxBatch of them into the next transaction
//     as soon as one of the Committers slots is free;
//   - two commands with the same idempotency key (and principal) never
//     share a batch: the later one waits for the next, where it finds the
//     first one's answer;
//   - a caller whose context ends while its command waits gets the
//     context's error; once its batch is sent, the batch runs to its end
//     whatever happens to that caller.
type Batcher struct {
	s    *Store
	cfg  BatchConfig
	log  *slog.Logger
	m    *batchMetrics
	reqs chan *pending
	mu   sync.RWMutex // held for reading while a request is being queued
	shut bool
	wg   sync.WaitGroup
	// slots holds one token per transaction in flight (Committers).
	slots chan struct{}
	// exec runs one batch; direct runs one command alone, on its caller's
	// goroutine, when a slot is free and nothing waits (nil: never). Tests
	// replace them.
	exec   func(batch []*pending)
	direct func(ctx context.Context, cmd Command) (Result, error)
	// beforeCommit, when set (tests), runs after a batch's writes were
	// sent and before its COMMIT is, with the backend's pid; an error
	// aborts the transaction.
	beforeCommit func(ctx context.Context, pid uint32) error
	stats        struct{ batches, commands, fallbacks, unknown atomic.Int64 }
}

// pending is one queued command and where its answer goes.
type pending struct {
	ctx  context.Context
	cmd  Command
	done chan outcome // buffered: answering never blocks a committer
}

type outcome struct {
	res Result
	err error
}

// answer delivers the command's outcome; only the first answer counts.
func (p *pending) answer(res Result, err error) {
	select {
	case p.done <- outcome{res, err}:
	default:
	}
}

// NewBatcher starts cfg.Committers committers over s and registers the
// group-commit metrics on reg. Close stops them. log gets a warning for
// each batch PostgreSQL refused as a whole or whose COMMIT was cut off.
func NewBatcher(s *Store, cfg BatchConfig, log *slog.Logger, reg prometheus.Registerer) (*Batcher, error) {
	if reg == nil {
		return nil, errors.New("eventstore: a prometheus.Registerer is required")
	}
	b, err := newBatcher(s, cfg, log)
	if err != nil {
		return nil, err
	}
	if b.m, err = newBatchMetrics(reg); err != nil {
		return nil, fmt.Errorf("eventstore: group commit metrics: %w", err)
	}
	b.start()
	return b, nil
}

// newBatcher returns a Batcher whose committers are not started yet, so
// tests can set exec and beforeCommit first.
func newBatcher(s *Store, cfg BatchConfig, log *slog.Logger) (*Batcher, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("eventstore: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	b := &Batcher{s: s, cfg: cfg, log: log, reqs: make(chan *pending, cfg.MaxBatch*cfg.Committers),
		slots: make(chan struct{}, cfg.Committers)}
	b.exec = b.runBatch
	if s != nil {
		b.direct = s.Execute
	}
	b.m, _ = newBatchMetrics(prometheus.NewRegistry()) // tests: registered nowhere
	return b, nil
}

func (b *Batcher) start() {
	for range b.cfg.Committers {
		b.wg.Add(1)
		go b.committer()
	}
}

// Execute queues cmd for the next batch and waits for its own outcome:
// the same Result or error the Store's Execute would give it. Nothing is
// answered before the batch's COMMIT returned.
func (b *Batcher) Execute(ctx context.Context, cmd Command) (Result, error) {
	if err := checkCommand(cmd); err != nil {
		return Result{}, err
	}
	p := &pending{ctx: ctx, cmd: cmd, done: make(chan outcome, 1)}
	b.mu.RLock()
	if b.shut {
		b.mu.RUnlock()
		return Result{}, ErrClosed
	}
	if b.takeIdleSlot() {
		b.wg.Add(1) // Close waits for it like for a batch
		b.mu.RUnlock()
		defer b.wg.Done()
		defer func() { <-b.slots }()
		b.count(1)
		return b.direct(ctx, cmd)
	}
	select {
	case b.reqs <- p:
		b.mu.RUnlock()
	case <-ctx.Done():
		b.mu.RUnlock()
		return Result{}, fmt.Errorf("queueing %s %s: %w", cmd.AggregateType, cmd.AggregateID, ctx.Err())
	}
	select {
	case o := <-p.done:
		return o.res, o.err
	case <-ctx.Done():
		// The command may still commit (its batch is on the way): the
		// caller reports a timeout, and a retry with the same idempotency
		// key gets the stored answer.
		return Result{}, fmt.Errorf("waiting for %s %s: %w", cmd.AggregateType, cmd.AggregateID, ctx.Err())
	}
}

// takeIdleSlot takes a transaction slot if the Batcher is idle: no
// transaction in flight and no command waiting. The command then runs
// alone, at once, on its caller's goroutine, in the Store's own
// transaction (a batch of one without the hand-over to a committer). As
// soon as anything is in flight, commands queue and the committers batch
// them; letting a command run alone whenever just one slot is free would
// split a busy api's load into single-command transactions.
func (b *Batcher) takeIdleSlot() bool {
	if b.direct == nil || len(b.reqs) > 0 || len(b.slots) > 0 {
		return false
	}
	select {
	case b.slots <- struct{}{}:
		return true
	default:
		return false
	}
}

func (b *Batcher) count(n int) {
	b.stats.batches.Add(1)
	b.stats.commands.Add(int64(n))
	b.m.commands.Observe(float64(n))
}

// Close stops taking commands, lets the committers finish what is queued
// and waits for them. It does not close the Store.
func (b *Batcher) Close() {
	b.mu.Lock()
	if !b.shut {
		b.shut = true
		close(b.reqs) // no sender is inside Execute's send: they hold mu
	}
	b.mu.Unlock()
	b.wg.Wait()
}

// Stats returns the counters so far.
func (b *Batcher) Stats() BatchStats {
	return BatchStats{Batches: b.stats.batches.Load(), Commands: b.stats.commands.Load(),
		Fallbacks: b.stats.fallbacks.Load(), Unknown: b.stats.unknown.Load()}
}

// committer runs batches until the queue is closed and empty. carry holds
// the commands a batch left for the next one (a repeated idempotency key,
// or more than MaxBatch).
func (b *Batcher) committer() {
	defer b.wg.Done()
	var carry []*pending
	full := false
	for {
		reqs, open := b.collect(carry, full)
		if len(reqs) == 0 && !open {
			return
		}
		var batch []*pending
		batch, carry = split(reqs, b.cfg.MaxBatch)
		batch = dropCancelled(batch)
		full = len(reqs) >= b.cfg.MaxBatch
		if len(batch) > 0 {
			b.count(len(batch))
			b.safeExec(batch)
		}
		<-b.slots
	}
}

// safeExec runs one batch; a panic (in a caller's Decide or Response
// hook, or a bug) answers the batch's unanswered commands instead of
// taking the process down. The batch may have committed by then, so the
// answer is ErrCommitUnknown.
func (b *Batcher) safeExec(batch []*pending) {
	defer func() {
		if r := recover(); r != nil {
			b.log.Error("group commit: panic in a batch", "commands", len(batch), "err", fmt.Errorf("%v", r))
			answerAll(batch, fmt.Errorf("%w: panic: %v", ErrCommitUnknown, r))
		}
	}()
	b.exec(batch)
}

// collect returns carry plus what is queued by the time a transaction
// slot is free, up to MaxBatch: it blocks while it has nothing at all,
// then for a slot, during which more commands queue. After a full batch it
// lingers up to Linger for more. open is false once the queue is closed.
// Unless it returns nothing, the caller holds a slot.
func (b *Batcher) collect(carry []*pending, lastFull bool) (reqs []*pending, open bool) {
	reqs = carry
	if len(reqs) == 0 {
		p, ok := <-b.reqs
		if !ok {
			return nil, false
		}
		reqs = append(reqs, p)
	}
	b.slots <- struct{}{}
	var linger <-chan time.Time
	if lastFull && b.cfg.Linger > 0 {
		t := time.NewTimer(b.cfg.Linger)
		defer t.Stop()
		linger = t.C
	}
	for len(reqs) < b.cfg.MaxBatch {
		select {
		case p, ok := <-b.reqs:
			if !ok {
				return reqs, false
			}
			reqs = append(reqs, p)
			continue
		default:
		}
		if linger == nil {
			break
		}
		select {
		case p, ok := <-b.reqs:
			if !ok {
				return reqs, false
			}
			reqs = append(reqs, p)
		case <-linger:
			linger = nil
		}
	}
	return reqs, true
}

// split takes reqs in arrival order into one batch of at most max
// commands, no two with the same idempotency key; the rest, in order, is
// carried to the next batch.
func split(reqs []*pending, max int) (batch, carry []*pending) {
	type key struct{ principal, key string }
	seen := map[key]bool{}
	for _, p := range reqs {
		if len(batch) == max {
			carry = append(carry, p)
			continue
		}
		if idem := p.cmd.Idempotency; idem != nil {
			k := key{idem.Principal, idem.Key}
			if seen[k] {
				carry = append(carry, p)
				continue
			}
			seen[k] = true
		}
		batch = append(batch, p)
	}
	return batch, carry
}

// dropCancelled answers the commands whose caller gave up while they were
// queued; they never reach the database.
func dropCancelled(batch []*pending) []*pending {
	out := batch[:0]
	for _, p := range batch {
		if err := p.ctx.Err(); err != nil {
			p.answer(Result{}, fmt.Errorf("queued %s %s: %w", p.cmd.AggregateType, p.cmd.AggregateID, err))
			continue
		}
		out = append(out, p)
	}
	return out
}

// checkCommand is what Execute refuses before any database work.
func checkCommand(cmd Command) error {
	if cmd.AggregateType == "" || cmd.AggregateID == "" {
		return errors.New("eventstore: aggregate type and id are required")
	}
	if cmd.Decide == nil && len(cmd.Events) == 0 {
		return errors.New("eventstore: no events to append")
	}
	return nil
}
