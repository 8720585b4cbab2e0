package projector

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sort"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"cqrsflow/internal/backoff"
	"cqrsflow/internal/envelope"
	"cqrsflow/internal/esindex"
)

// Store is the read model as the processor needs it. The Elasticsearch
// adapter is in store_es.go; tests use an in-memory one.
type Store interface {
	// MGet returns the stored documents among ids with their versions;
	// an id without a document is absent from the map.
	MGet(ctx context.Context, ids []string) (map[string]esindex.Hit, error)
	// Bulk writes the documents with their version as external version and
	// returns one result per op, in order. A version conflict is a result
	// (Conflict), not an error.
	Bulk(ctx context.Context, ops []esindex.Op) ([]esindex.Result, error)
}

// DLQ sends a record to its dead-letter topic and returns once Kafka has
// acknowledged it. The Kafka adapter is in dlq_kafka.go.
type DLQ interface {
	Send(ctx context.Context, rec *kgo.Record, reason string) error
}

// processor applies batches of records to the read model. It uses Kafka
// records as data only: polling, committing and rebalances belong to the
// consumer (consumer.go), so the processor is tested with fakes of Store
// and DLQ.
type processor struct {
	proj        Projection
	store       Store
	dlq         DLQ
	parts       *partitions
	cache       *docCache
	m           *Metrics
	log         *slog.Logger
	retryPolicy backoff.Policy

	lastApplied    atomic.Int64 // recorded_at (unix nanos) of the newest applied event
	inflightOldest atomic.Int64 // recorded_at of the oldest record of the batch in progress, 0 if none
}

func newProcessor(proj Projection, store Store, dlq DLQ, parts *partitions, m *Metrics, log *slog.Logger, b backoff.Policy) *processor {
	return &processor{proj: proj, store: store, dlq: dlq, parts: parts, cache: newDocCache(defaultCacheMax),
		m: m, log: log, retryPolicy: b}
}

// batch is one poll's records, decoded and grouped by aggregate.
type batch struct {
	ids    []string             // aggregates in order of first appearance, then the parked ones
	idTP   map[string]tp        // the partition of each aggregate
	byID   map[string][]pending // the batch's events per aggregate (nil for a parked aggregate without new events)
	poison []poisonRec          // undecodable records, envelopes of another aggregate type
	oldest int64                // recorded_at (unix nanos) of the oldest decoded event, 0 if none
}

// keyPlan is one aggregate's share of a batch: its fold and its write.
type keyPlan struct {
	folded
	id    string
	tp    tp
	op    *esindex.Op // nil when the document does not change
	evict bool        // Elasticsearch holds a newer version: forget the cached state
}

// handle processes one batch: poison records go to the DLQ, the rest are
// folded onto the current documents and written with one _bulk request.
// It retries Elasticsearch and DLQ failures with capped backoff until they
// succeed or ctx ends; only then does it advance the partitions' handled
// offsets. An error means the batch was not (fully) handled.
func (p *processor) handle(ctx context.Context, recs []*kgo.Record) error {
	if len(recs) == 0 && p.parts.parkedEvents() == 0 {
		return nil
	}
	b := p.group(recs)
	p.inflightOldest.Store(b.oldest)
	defer p.inflightOldest.Store(0)

	if err := p.sendPoison(ctx, b.poison); err != nil {
		return err
	}
	var plans []*keyPlan
	err := p.retry(ctx, "applying batch", func() error {
		var err error
		plans, err = p.apply(ctx, b)
		return err
	})
	if err != nil {
		return err
	}
	p.finish(recs, plans)
	return nil
}

// group decodes recs and groups the events by aggregate.
func (p *processor) group(recs []*kgo.Record) *batch {
	b := &batch{idTP: map[string]tp{}, byID: map[string][]pending{}}
	envs, errs := p.decodeAll(recs)
	for i, rec := range recs {
		env, err := envs[i], errs[i]
		if err != nil {
			b.poison = append(b.poison, poisonRec{rec: rec, reason: err.Error()})
			continue
		}
		if ts := env.RecordedAt.UnixNano(); b.oldest == 0 || ts < b.oldest {
			b.oldest = ts
		}
		if _, ok := b.byID[env.AggregateID]; !ok {
			b.ids = append(b.ids, env.AggregateID)
			b.idTP[env.AggregateID] = tp{rec.Topic, rec.Partition}
		}
		b.byID[env.AggregateID] = append(b.byID[env.AggregateID], pending{env: env, rec: rec})
	}
	// Parked aggregates are re-checked with every batch even without new
	// events: their gap may have been closed by another writer (e.g. a
	// rebuild writing through the alias), which turns the parked events
	// into no-ops or makes them applicable.
	for id, t := range p.parts.parkedKeys() {
		if _, ok := b.byID[id]; !ok {
			b.ids = append(b.ids, id)
			b.idTP[id] = t
			b.byID[id] = nil
		}
	}
	return b
}

// decodeAll decodes the envelopes of recs, in parallel for large batches
// (decoding is most of the projector's CPU). errs[i] says why recs[i] is
// poison: undecodable, or an envelope of another aggregate type.
func (p *processor) decodeAll(recs []*kgo.Record) ([]*envelope.Envelope, []error) {
	envs := make([]*envelope.Envelope, len(recs))
	errs := make([]error, len(recs))
	_ = parallel(len(recs), func(lo, hi int) error {
		for i := lo; i < hi; i++ {
			env, err := envelope.Decode(recs[i].Value)
			if err == nil && env.AggregateType != p.proj.AggregateType() {
				err = fmt.Errorf("aggregate_type %q on the topic of %q", env.AggregateType, p.proj.AggregateType())
			}
			envs[i], errs[i] = env, err
		}
		return nil
	})
	return envs, errs
}

// sendPoison dead-letters the records that did not decode.
func (p *processor) sendPoison(ctx context.Context, poison []poisonRec) error {
	for _, pr := range poison {
		if err := p.retry(ctx, "sending poison record to the DLQ", func() error { return p.dlq.Send(ctx, pr.rec, pr.reason) }); err != nil {
			return err
		}
		p.log.Warn("record sent to the DLQ", "topic", pr.rec.Topic, "partition", pr.rec.Partition, "offset", pr.rec.Offset, "reason", pr.reason)
		p.m.Events.WithLabelValues(p.proj.Name(), OutcomeDLQ).Inc()
	}
	return nil
}

// apply reads the current documents, folds the batch onto them, writes
// the changed ones and sends unprojectable events to the DLQ. It changes
// nothing but the store and the DLQ, and every write is versioned, so
// handle can repeat it after a failure.
func (p *processor) apply(ctx context.Context, b *batch) ([]*keyPlan, error) {
	events, states, missing := p.gather(b)
	if err := p.readCurrent(ctx, missing, states); err != nil {
		return nil, err
	}
	plans, err := p.foldAll(b, events, states)
	if err != nil {
		return nil, err
	}
	if err := p.write(ctx, plans); err != nil {
		return nil, err
	}
	for _, kp := range plans {
		for _, pr := range kp.poison {
			if err := p.dlq.Send(ctx, pr.rec, pr.reason); err != nil {
				return nil, fmt.Errorf("sending unprojectable record to the DLQ: %w", err)
			}
		}
	}
	return plans, nil
}

// gather returns each aggregate's events (its parked ones and the batch's,
// sorted by version), the documents the cache holds, and the aggregates
// whose documents must be read. Parked aggregates always read the store:
// someone else may have written the missing version.
func (p *processor) gather(b *batch) (map[string][]pending, map[string]docState, []string) {
	parked := p.parts.parkedFor(b.ids, b.idTP)
	events := make(map[string][]pending, len(b.ids))
	var cacheable, missing []string
	for _, id := range b.ids {
		evs := make([]pending, 0, len(parked[id])+len(b.byID[id]))
		evs = append(append(evs, parked[id]...), b.byID[id]...)
		sort.SliceStable(evs, func(i, j int) bool { return evs[i].env.Version < evs[j].env.Version })
		events[id] = evs
		if len(parked[id]) > 0 {
			missing = append(missing, id)
		} else {
			cacheable = append(cacheable, id)
		}
	}
	states := make(map[string]docState, len(b.ids))
	missing = append(missing, p.cache.lookup(cacheable, states)...)
	return events, states, missing
}

// readCurrent reads the stored documents of ids into states.
func (p *processor) readCurrent(ctx context.Context, ids []string, states map[string]docState) error {
	hits, err := p.store.MGet(ctx, ids)
	if err != nil {
		return fmt.Errorf("fetching current documents: %w", err)
	}
	for _, id := range ids {
		st, err := stateOf(p.proj, id, hits[id])
		if err != nil {
			return err
		}
		states[id] = st
	}
	return nil
}

// foldAll folds every aggregate of the batch (in parallel for large
// batches) and encodes the documents that changed.
func (p *processor) foldAll(b *batch, events map[string][]pending, states map[string]docState) ([]*keyPlan, error) {
	plans := make([]*keyPlan, len(b.ids))
	err := parallel(len(b.ids), func(lo, hi int) error {
		for i := lo; i < hi; i++ {
			id := b.ids[i]
			f, err := fold(p.proj, id, states[id], events[id])
			if err != nil {
				return err
			}
			kp := &keyPlan{folded: f, id: id, tp: b.idTP[id]}
			if f.changed {
				doc, err := json.Marshal(f.final.doc)
				if err != nil {
					return fmt.Errorf("encoding document %s: %w", id, err)
				}
				kp.op = &esindex.Op{ID: id, Version: f.final.version, Doc: doc}
			}
			plans[i] = kp
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return plans, nil
}

// write stores the changed documents with one bulk request. Any item
// error other than a version conflict fails the batch (and so retries it).
func (p *processor) write(ctx context.Context, plans []*keyPlan) error {
	var ops []esindex.Op
	var opPlan []*keyPlan
	for _, kp := range plans {
		if kp.op != nil {
			ops = append(ops, *kp.op)
			opPlan = append(opPlan, kp)
		}
	}
	results, err := p.store.Bulk(ctx, ops)
	if err != nil {
		return fmt.Errorf("writing documents: %w", err)
	}
	for i, r := range results {
		kp := opPlan[i]
		switch {
		case r.Conflict:
			// Elasticsearch holds this version or a newer one: a newer
			// writer won, our events were stale.
			kp.stale = append(kp.stale, kp.applied...)
			kp.applied = nil
			kp.evict = true
		case r.Err != "":
			return fmt.Errorf("%w: bulk item %s: status %d: %s", esindex.ErrUnavailable, kp.id, r.Status, r.Err)
		}
	}
	return nil
}

// finish records a handled batch: the cache, the parked sets and handled
// offsets (partitions.go), metrics and logs.
func (p *processor) finish(recs []*kgo.Record, plans []*keyPlan) {
	p.cache.update(plans)
	newlyParked, unparked := p.parts.settle(recs, plans)
	name := p.proj.Name()
	for _, e := range newlyParked {
		p.m.Events.WithLabelValues(name, OutcomeParked).Inc()
		p.m.VersionGaps.Inc()
		p.log.Warn("version gap: event parked", "aggregate_id", e.env.AggregateID, "version", e.env.Version,
			"topic", e.rec.Topic, "partition", e.rec.Partition, "offset", e.rec.Offset)
	}
	for _, id := range unparked {
		p.log.Info("version gap closed: key unparked", "aggregate_id", id)
	}
	now := time.Now()
	for _, kp := range plans {
		p.m.Events.WithLabelValues(name, OutcomeApplied).Add(float64(len(kp.applied)))
		p.m.Events.WithLabelValues(name, OutcomeDuplicate).Add(float64(len(kp.duplicate)))
		p.m.Events.WithLabelValues(name, OutcomeStale).Add(float64(len(kp.stale)))
		p.m.Events.WithLabelValues(name, OutcomeDLQ).Add(float64(len(kp.poison)))
		for _, pr := range kp.poison {
			p.log.Warn("unprojectable event sent to the DLQ", "aggregate_id", kp.id,
				"offset", pr.rec.Offset, "reason", pr.reason)
		}
		for _, e := range kp.applied {
			ts := e.env.RecordedAt
			p.m.EndToEnd.WithLabelValues(name).Observe(now.Sub(ts).Seconds())
			if n := ts.UnixNano(); n > p.lastApplied.Load() {
				p.lastApplied.Store(n)
			}
		}
	}
}

// drop forgets partitions this worker no longer owns (revoked after their
// commit, or lost), and the cached documents, which are only valid while
// the partitions are owned.
func (p *processor) drop(parts map[string][]int32) {
	p.parts.drop(parts)
	p.cache.clear()
}

// oldestHeld is the recorded_at of the oldest record this worker holds
// without having finished it (batch in progress or parked); zero if none.
func (p *processor) oldestHeld() time.Time {
	oldest := p.inflightOldest.Load()
	if n := p.parts.oldestParked(); n != 0 && (oldest == 0 || n < oldest) {
		oldest = n
	}
	if oldest == 0 {
		return time.Time{}
	}
	return time.Unix(0, oldest)
}

// retry runs fn until it succeeds or ctx ends, with the runtime's capped
// backoff between attempts.
func (p *processor) retry(ctx context.Context, what string, fn func() error) error {
	err := backoff.Retry(ctx, p.retryPolicy, func(context.Context) error { return fn() }, func(attempt int, wait time.Duration, err error) {
		p.log.Warn("retrying", "what", what, "attempt", attempt+1, "backoff", wait.String(), "err", err)
	})
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}
