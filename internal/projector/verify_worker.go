package projector

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"cqrsflow/internal/backoff"
)

// Defaults of the continuous verification.
const (
	DefaultVerifyRate   = 2
	DefaultVerifyWindow = 10 * time.Minute
	// verifyWalkPage is how many aggregate ids one step of the walk reads.
	verifyWalkPage = 256
	// maxDriftTracked bounds the drifted aggregates a worker remembers
	// for the gauge (the gauge then reads at least this many).
	maxDriftTracked = 10000
	// verifyBackoffMax bounds the pause after failed verifications
	// (PostgreSQL or Elasticsearch unavailable): verification never
	// stops, and never holds up the projection.
	verifyBackoffMax = time.Minute
	// verifyMaxPages bounds the walk's reads in one tick (a worker whose
	// partitions hold few of the aggregates).
	verifyMaxPages = 64
)

var errNoPartitions = errors.New("the event topic has no partitions")

// VerifyConfig configures the continuous verification of a Runner.
type VerifyConfig struct {
	// Events is the event store (nil: no verification).
	Events EventStore
	// Rate is how many aggregates are verified per second (0: none).
	Rate int
	// Margin is added to the sync lag (the recorded_at of the oldest
	// record the group has not committed): events younger than both are
	// in flight.
	Margin time.Duration
	// Window is how long a drifted aggregate counts in
	// cqrsflow_projection_drift_aggregates after it was last found (it
	// stops counting at once when it verifies equal again).
	Window time.Duration
}

// ownedParts is the set of partitions a Runner is assigned.
type ownedParts struct {
	mu sync.Mutex
	m  map[int32]bool
}

func (o *ownedParts) set(parts map[string][]int32, topic string, owned bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.m == nil {
		o.m = map[int32]bool{}
	}
	for _, p := range parts[topic] {
		if owned {
			o.m[p] = true
		} else {
			delete(o.m, p)
		}
	}
}

func (o *ownedParts) snapshot() map[int32]bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := make(map[int32]bool, len(o.m))
	for p := range o.m {
		out[p] = true
	}
	return out
}

// workerVerifier verifies the aggregates of the partitions its Runner
// owns, Rate per second, while the Runner projects. It walks every
// aggregate of the event store in id order (and starts over at the end),
// keeping those whose key maps to an owned partition, so every aggregate
// is verified once per walk, whether it changes or not. An aggregate with
// events recorded after the oldest record the group has not committed
// (less Margin), parked in this worker or still in the outbox is in
// flight and not judged.
type workerVerifier struct {
	r      *Runner
	cfg    VerifyConfig
	v      *verifier
	log    *slog.Logger
	parter kgo.TopicPartitioner
	nparts int
	after  string   // the walk's position
	queue  []string // owned aggregates the walk found, not verified yet
	drift  map[string]time.Time
	retry  backoff.Counter // pauses after consecutive failures
	resume time.Time
}

func newWorkerVerifier(r *Runner) *workerVerifier {
	cfg := r.cfg.Verify
	w := &workerVerifier{r: r, cfg: cfg, log: r.log.With("component", "verify"), drift: map[string]time.Time{},
		parter: kgo.StickyKeyPartitioner(nil).ForTopic(r.cfg.Topic),
		retry:  backoff.Counter{Policy: backoff.Policy{Min: time.Second, Max: verifyBackoffMax}}}
	w.v = &verifier{proj: r.proj, events: cfg.Events, store: r.proc.store, pageRows: DefaultVerifyPageRows,
		holds: func(ids []string) map[string][]heldVersion {
			out := map[string][]heldVersion{}
			for id, e := range r.quar.Lookup(ids) {
				out[id] = []heldVersion{{version: e.BlockedVersion, kind: holdBlocked, why: "quarantined (" + e.Reason + ")"}}
			}
			return out
		},
		// The group's committed position, as `projector verify` uses it:
		// the sync lag gauge is a lower bound while a worker is behind
		// (it starts at 0 when a backlog is first seen, e.g. after taking
		// over a killed worker's partitions), so it would call a backlog
		// drift.
		cutoff: func(ctx context.Context) (time.Time, error) {
			return groupCutoff(ctx, r.cfg.conn(), r.adm, r.cfg.Group, r.cfg.Topic, cfg.Margin, w.log)
		}}
	return w
}

// run verifies until ctx ends.
func (w *workerVerifier) run(ctx context.Context) {
	w.log.Info("continuous verification on", "rate_per_second", w.cfg.Rate, "margin", w.cfg.Margin.String())
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if time.Now().Before(w.resume) {
			continue
		}
		if err := w.tick(ctx); err != nil && ctx.Err() == nil {
			pause := w.retry.Next()
			w.resume = time.Now().Add(pause)
			w.log.Warn("verification failed; retrying later", "retry_in", pause.String(), "err", err)
			continue
		}
		w.retry.Reset()
	}
}

// tick verifies the next Rate aggregates of the walk.
func (w *workerVerifier) tick(ctx context.Context) error {
	ids, err := w.next(ctx, w.cfg.Rate)
	if err != nil || len(ids) == 0 {
		w.prune(time.Now())
		return err
	}
	parked := w.r.parts.parkedKeys()
	w.v.busy = func(id string) bool { _, ok := parked[id]; return ok }
	_, err = w.v.check(ctx, ids, func(c Check) error { w.record(c); return nil })
	w.prune(time.Now())
	return err
}

// next returns up to n aggregates of owned partitions, walking on.
func (w *workerVerifier) next(ctx context.Context, n int) ([]string, error) {
	owned := w.r.owned.snapshot()
	if len(owned) == 0 {
		w.queue = w.queue[:0]
		return nil, nil
	}
	for wrapped, pages := false, 0; len(w.queue) < n && pages < verifyMaxPages; pages++ {
		if w.nparts == 0 || w.after == "" {
			if err := w.partitionCount(ctx); err != nil {
				return nil, err
			}
		}
		page, err := w.cfg.Events.IDs(ctx, w.after, time.Time{}, verifyWalkPage)
		if err != nil {
			return nil, err
		}
		for _, id := range page {
			if owned[int32(w.parter.Partition(&kgo.Record{Key: []byte(id)}, w.nparts))] {
				w.queue = append(w.queue, id)
			}
		}
		if len(page) < verifyWalkPage {
			w.after = ""
			if wrapped {
				break // fewer owned aggregates than n: verify them all
			}
			wrapped = true
			continue
		}
		w.after = page[len(page)-1]
	}
	k := min(n, len(w.queue))
	ids := append([]string(nil), w.queue[:k]...)
	w.queue = w.queue[k:]
	return ids, nil
}

// partitionCount reads the topic's partition count (at the start of every
// walk: partitions can be added).
func (w *workerVerifier) partitionCount(ctx context.Context) error {
	tds, err := w.r.adm.ListTopics(ctx, w.r.cfg.Topic)
	if err == nil {
		err = tds.Error()
	}
	if err != nil {
		return err
	}
	td, ok := tds[w.r.cfg.Topic]
	if !ok || len(td.Partitions) == 0 {
		return errNoPartitions
	}
	w.nparts = len(td.Partitions)
	return nil
}

// record counts one verified aggregate and tracks drift for the gauge.
func (w *workerVerifier) record(c Check) {
	name := w.r.proj.Name()
	w.r.m.Verified.WithLabelValues(name, c.Result).Inc()
	if !IsDrift(c.Result) {
		delete(w.drift, c.AggregateID)
		return
	}
	if _, ok := w.drift[c.AggregateID]; ok || len(w.drift) < maxDriftTracked {
		w.drift[c.AggregateID] = time.Now()
	}
	w.log.Warn("read model drift: the document is not what the events fold into", "aggregate_id", c.AggregateID,
		"result", c.Result, "document_version", c.DocumentVersion, "expected_version", c.ExpectedVersion,
		"event_version", c.EventVersion)
}

// prune forgets drift older than the window and sets the gauge.
func (w *workerVerifier) prune(now time.Time) {
	for id, at := range w.drift {
		if now.Sub(at) > w.cfg.Window {
			delete(w.drift, id)
		}
	}
	w.r.m.Drift.WithLabelValues(w.r.proj.Name()).Set(float64(len(w.drift)))
}
