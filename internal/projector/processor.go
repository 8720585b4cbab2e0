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

// DLQ sends records to their dead-letter topic and returns once Kafka has
// acknowledged them all, with each letter's DLQ partition and offset set.
// The Kafka adapter is in dlq_kafka.go.
type DLQ interface {
	Send(ctx context.Context, letters []*DeadLetter) error
}

// processor applies batches of records to the read model. It uses Kafka
// records as data only: polling, committing and rebalances belong to the
// consumer (consumer.go), so the processor is tested with fakes of Store,
// DLQ and Quarantine.
type processor struct {
	proj        Projection
	store       Store
	dlq         DLQ
	quar        Quarantine
	parts       *partitions
	cache       *docCache
	m           *Metrics
	log         *slog.Logger
	retryPolicy backoff.Policy
	parkTimeout time.Duration // how long a version gap may hold an aggregate's events
	maxParked   int           // parked events at which the oldest gaps are quarantined
	now         func() time.Time

	lastApplied    atomic.Int64 // recorded_at (unix nanos) of the newest applied event
	inflightOldest atomic.Int64 // recorded_at of the oldest record of the batch in progress, 0 if none
}

func newProcessor(proj Projection, store Store, dlq DLQ, quar Quarantine, parts *partitions, m *Metrics, log *slog.Logger, cfg Config) *processor {
	cfg.defaults()
	return &processor{proj: proj, store: store, dlq: dlq, quar: quar, parts: parts, cache: newDocCache(cfg.DocCacheEntries),
		m: m, log: log, retryPolicy: backoff.Policy{Min: cfg.BackoffMin, Max: cfg.BackoffMax},
		parkTimeout: cfg.ParkTimeout, maxParked: cfg.MaxParked, now: time.Now}
}

// batch is one poll's records, decoded and grouped by aggregate.
type batch struct {
	ids    []string             // aggregates in order of first appearance, then the parked ones
	idTP   map[string]tp        // the partition of each aggregate
	byID   map[string][]pending // the batch's events per aggregate (nil for a parked aggregate without new events)
	poison []*DeadLetter        // records that cannot be routed to an aggregate of this projection
	oldest int64                // recorded_at (unix nanos) of the oldest decoded event, 0 if none
}

// keyPlan is one aggregate's share of a batch: its fold, its write, and
// what goes to the DLQ and the quarantine topic.
type keyPlan struct {
	folded
	id    string
	tp    tp
	base  docState    // the document before the batch
	op    *esindex.Op // nil when the document does not change
	evict bool        // Elasticsearch holds a newer version: forget the cached state
	// foldless: every event of the aggregate was held by its quarantine,
	// so its document was neither read nor folded.
	foldless bool
	// quarantined is the aggregate's quarantine before the batch (nil if
	// none); preHeld are the events it held (version above its blocked
	// one); gapHeld the parked events given up on (PARK_TIMEOUT or
	// MAX_PARKED_EVENTS), gapAt the missing version they wait for.
	quarantined *QuarantineEntry
	preHeld     []pending
	gapHeld     []pending
	gapAt       int64
	gapDetail   string
	// letters and entry are what settle writes: the dead letters, and the
	// quarantine entry when the aggregate is newly (or lower) blocked.
	letters []*DeadLetter
	entry   *QuarantineEntry
}

// handle processes one batch: records that cannot be routed to an
// aggregate go to the DLQ, the rest are folded onto the current documents
// and written with one _bulk request; poison events are dead-lettered and
// block their aggregate (its later events are held in the DLQ), never the
// partition. It retries transient failures (Elasticsearch or Kafka
// unavailable) with capped backoff until they succeed or ctx ends; only
// then does it advance the partitions' handled offsets. An error means the
// batch was not (fully) handled.
func (p *processor) handle(ctx context.Context, recs []*kgo.Record) error {
	if len(recs) == 0 && p.parts.parkedEvents() == 0 {
		return nil
	}
	b := p.group(recs)
	p.inflightOldest.Store(b.oldest)
	defer p.inflightOldest.Store(0)

	if err := p.retry(ctx, "sending unreadable records to the DLQ", func() error { return p.dlq.Send(ctx, b.poison) }); err != nil {
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
	p.finish(recs, b.poison, plans)
	return nil
}

// group decodes recs and groups the events by aggregate.
func (p *processor) group(recs []*kgo.Record) *batch {
	b := &batch{idTP: map[string]tp{}, byID: map[string][]pending{}}
	evs := p.decodeAll(recs)
	for i, rec := range recs {
		e := evs[i]
		if e.env == nil {
			b.poison = append(b.poison, &DeadLetter{Rec: rec, Code: e.bad.code, Reason: e.bad.reason})
			continue
		}
		if ts := e.env.RecordedAt.UnixNano(); e.bad == nil && (b.oldest == 0 || ts < b.oldest) {
			b.oldest = ts
		}
		id := e.env.AggregateID
		if _, ok := b.byID[id]; !ok {
			b.ids = append(b.ids, id)
			b.idTP[id] = tp{rec.Topic, rec.Partition}
		}
		b.byID[id] = append(b.byID[id], e)
	}
	// Parked aggregates are re-checked with every batch even without new
	// events: their gap may have been closed by another writer (e.g. a
	// rebuild writing through the alias), which turns the parked events
	// into no-ops or makes them applicable, or it may have timed out.
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
// (decoding is most of the projector's CPU). A record that does not
// decode is routed to its aggregate when its aggregate and version can
// still be read (it blocks that aggregate); otherwise env is nil and bad
// says why.
func (p *processor) decodeAll(recs []*kgo.Record) []pending {
	out := make([]pending, len(recs))
	_ = parallel(len(recs), func(lo, hi int) error {
		for i := lo; i < hi; i++ {
			out[i] = p.decode(recs[i])
		}
		return nil
	})
	return out
}

func (p *processor) decode(rec *kgo.Record) pending {
	env, err := envelope.Decode(rec.Value)
	if err == nil && env.AggregateType != p.proj.AggregateType() {
		err = wrongAggregate(env.AggregateType, p.proj.AggregateType())
	}
	if err == nil {
		return pending{env: env, rec: rec}
	}
	bad := &poisonRec{rec: rec, code: classifyDecode(err), reason: err.Error()}
	if bad.code == ReasonInvalidEnvelope {
		// The key is the aggregate id: a record whose content claims
		// another aggregate is not trusted to block it.
		if id, ok := envelope.Identify(rec.Value); ok && id.AggregateType == p.proj.AggregateType() && id.AggregateID == string(rec.Key) {
			return pending{env: &envelope.Envelope{AggregateType: id.AggregateType, AggregateID: id.AggregateID, Version: id.Version},
				rec: rec, bad: bad}
		}
	}
	return pending{rec: rec, bad: bad}
}

// apply reads the current documents, folds the batch onto them, writes
// the changed ones, then sends the dead letters and the new quarantine
// entries (settle). It changes nothing but the store, the DLQ and the
// quarantine topic, and every write is versioned or idempotent, so handle
// can repeat it after a failure (a repeat may dead-letter a record twice;
// redrive treats duplicates as one).
func (p *processor) apply(ctx context.Context, b *batch) ([]*keyPlan, error) {
	events, held, states, missing := p.gather(b)
	if err := p.readCurrent(ctx, missing, states); err != nil {
		return nil, err
	}
	plans, err := p.foldAll(b, events, states)
	if err != nil {
		return nil, err
	}
	for _, kp := range plans {
		if q, ok := held[kp.id]; ok {
			kp.quarantined, kp.preHeld = &q.entry, q.evs
		}
	}
	p.bound(plans)
	if err := p.write(ctx, plans); err != nil {
		return nil, err
	}
	if err := p.settle(ctx, plans); err != nil {
		return nil, err
	}
	return plans, nil
}

// heldByQuarantine is a quarantined aggregate's entry and the batch's
// events it holds.
type heldByQuarantine struct {
	entry QuarantineEntry
	evs   []pending
}

// gather returns each aggregate's events to fold (its parked ones and the
// batch's, sorted by version, without those its quarantine holds), the
// held ones, the documents the cache holds, and the aggregates whose
// documents must be read. Parked aggregates always read the store:
// someone else may have written the missing version.
func (p *processor) gather(b *batch) (map[string][]pending, map[string]heldByQuarantine, map[string]docState, []string) {
	parked := p.parts.parkedFor(b.ids, b.idTP)
	quarantined := p.quar.Lookup(b.ids)
	events := make(map[string][]pending, len(b.ids))
	held := map[string]heldByQuarantine{}
	var cacheable, missing []string
	for _, id := range b.ids {
		evs := make([]pending, 0, len(parked[id])+len(b.byID[id]))
		evs = append(append(evs, parked[id]...), b.byID[id]...)
		sort.SliceStable(evs, func(i, j int) bool { return evs[i].env.Version < evs[j].env.Version })
		if q, ok := quarantined[id]; ok {
			cut := sort.Search(len(evs), func(i int) bool { return evs[i].env.Version > q.BlockedVersion })
			held[id] = heldByQuarantine{entry: q, evs: evs[cut:]}
			evs = evs[:cut]
		}
		events[id] = evs
		switch {
		case len(evs) == 0:
		case len(parked[id]) > 0:
			missing = append(missing, id)
		default:
			cacheable = append(cacheable, id)
		}
	}
	states := make(map[string]docState, len(b.ids))
	missing = append(missing, p.cache.lookup(cacheable, states)...)
	return events, held, states, missing
}

// readCurrent reads the stored documents of ids into states.
func (p *processor) readCurrent(ctx context.Context, ids []string, states map[string]docState) error {
	if len(ids) == 0 {
		return nil
	}
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
			if len(events[id]) == 0 {
				plans[i] = &keyPlan{id: id, tp: b.idTP[id], foldless: true}
				continue
			}
			f, err := fold(p.proj, id, states[id], events[id])
			if err != nil {
				return err
			}
			kp := &keyPlan{folded: f, id: id, tp: b.idTP[id], base: states[id]}
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

// finish records a handled batch: the cache, the parked sets and handled
// offsets (partitions.go), metrics and logs.
func (p *processor) finish(recs []*kgo.Record, unread []*DeadLetter, plans []*keyPlan) {
	p.cache.update(plans)
	newlyParked, unparked := p.parts.settle(recs, plans, p.now())
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
	p.countLetters(unread)
	now := time.Now()
	for _, kp := range plans {
		p.m.Events.WithLabelValues(name, OutcomeApplied).Add(float64(len(kp.applied)))
		p.m.Events.WithLabelValues(name, OutcomeDuplicate).Add(float64(len(kp.duplicate)))
		p.m.Events.WithLabelValues(name, OutcomeStale).Add(float64(len(kp.stale)))
		p.countLetters(kp.letters)
		p.logQuarantine(kp)
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
