package projector

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"cqrsflow/internal/backoff"
	"cqrsflow/internal/envelope"
	"cqrsflow/internal/esindex"
	"cqrsflow/internal/projection"
)

// Projection folds events of one aggregate type into documents. The
// implementations (internal/projection/...) are pure.
type Projection interface {
	Name() string
	AggregateType() string
	Mapping() ([]byte, error)
	// Decode parses a stored document (_source).
	Decode(source []byte) (any, error)
	// Apply returns the document after env; current is nil when there is no
	// document yet. An error wrapping projection.ErrUnprojectable sends the
	// record to the DLQ.
	Apply(current any, env *envelope.Envelope) (any, error)
}

// Store is what the runtime needs from the read-model index.
type Store interface {
	MGet(ctx context.Context, ids []string) (map[string]esindex.Hit, error)
	Bulk(ctx context.Context, ops []esindex.Op) ([]esindex.Result, error)
}

// DLQ sends a record to its dead-letter topic and returns once Kafka has
// acknowledged it.
type DLQ interface {
	Send(ctx context.Context, rec *kgo.Record, reason string) error
}

type tp struct {
	topic     string
	partition int32
}

type pending struct {
	env *envelope.Envelope
	rec *kgo.Record
}

// partState is what the runtime knows about one assigned partition.
type partState struct {
	// next is the offset after the last record handled (applied, no-op,
	// DLQ'd or parked); Offset -1 until a record was handled.
	next kgo.EpochOffset
	// parked holds, per aggregate id, the events waiting behind a version
	// gap, sorted by version.
	parked map[string][]pending
	// committed is the last offset committed for the partition (-1: none).
	committed int64
}

// committable is the offset the group may commit for the partition: the
// offset of the oldest parked record if any (so a restart or a new owner
// re-reads it), else the offset after the last handled record.
func (s *partState) committable() (kgo.EpochOffset, bool) {
	best := s.next
	for _, evs := range s.parked {
		for _, e := range evs {
			if best.Offset < 0 || e.rec.Offset < best.Offset {
				best = kgo.EpochOffset{Epoch: e.rec.LeaderEpoch, Offset: e.rec.Offset}
			}
		}
	}
	return best, best.Offset >= 0
}

// processor applies batches of records; it is the part of the runtime that
// does not depend on the Kafka client, so it can be tested with fakes.
type processor struct {
	proj        Projection
	store       Store
	dlq         DLQ
	m           *Metrics
	log         *slog.Logger
	retryPolicy backoff.Policy

	mu    sync.Mutex
	parts map[tp]*partState
	// cache holds the documents this worker wrote or read, by aggregate
	// id, so steady-state batches skip the _mget (a realtime get of a
	// recently written document costs Elasticsearch a refresh). It is only
	// valid while the worker owns the partitions, so it is cleared on every
	// revoke/loss; a 409 on write evicts the entry. Bounded by cacheMax
	// (cleared when full).
	cache    map[string]docState
	cacheMax int
	parkedN  int // events in parts[*].parked, kept by updateParkedGauge

	lastApplied    atomic.Int64 // recorded_at (unix nanos) of the newest applied event
	inflightOldest atomic.Int64 // recorded_at of the oldest record of the batch in progress, 0 if none
}

func newProcessor(proj Projection, store Store, dlq DLQ, m *Metrics, log *slog.Logger, b backoff.Policy) *processor {
	return &processor{proj: proj, store: store, dlq: dlq, m: m, log: log, retryPolicy: b, parts: map[tp]*partState{},
		cache: map[string]docState{}, cacheMax: 200000}
}

func (p *processor) part(t tp) *partState {
	s := p.parts[t]
	if s == nil {
		s = &partState{next: kgo.EpochOffset{Epoch: -1, Offset: -1}, parked: map[string][]pending{}, committed: -1}
		p.parts[t] = s
	}
	return s
}

type poisonRec struct {
	rec    *kgo.Record
	reason string
}

// docState is a document as the fold sees it.
type docState struct {
	doc         any // nil: no document
	version     int64
	lastEventID string
}

// keyPlan is the in-memory fold of one aggregate for one batch.
type keyPlan struct {
	final     docState // after the batch
	evict     bool     // Elasticsearch holds a newer version: forget the cached state
	id        string
	tp        tp
	op        *esindex.Op // nil when the document does not change
	applied   []pending
	duplicate []pending
	stale     []pending
	parked    []pending // still waiting after this batch
	poison    []poisonRec
}

// handle processes one batch: poison records go to the DLQ, the rest are
// folded onto the current documents and written with one _bulk request.
// It retries Elasticsearch and DLQ failures with capped backoff until they
// succeed or ctx ends; only then does it advance the partitions' handled
// offsets. An error means the batch was not (fully) handled.
func (p *processor) handle(ctx context.Context, recs []*kgo.Record) error {
	if len(recs) == 0 && p.parkedEvents() == 0 {
		return nil
	}
	byID := map[string][]pending{}
	idTP := map[string]tp{}
	var ids []string
	var poison []poisonRec
	oldest := int64(0)
	envs, errs := p.decodeAll(recs)
	for i, rec := range recs {
		env, err := envs[i], errs[i]
		if err != nil {
			poison = append(poison, poisonRec{rec: rec, reason: err.Error()})
			continue
		}
		if ts := env.RecordedAt.UnixNano(); oldest == 0 || ts < oldest {
			oldest = ts
		}
		if _, ok := byID[env.AggregateID]; !ok {
			ids = append(ids, env.AggregateID)
			idTP[env.AggregateID] = tp{rec.Topic, rec.Partition}
		}
		byID[env.AggregateID] = append(byID[env.AggregateID], pending{env: env, rec: rec})
	}
	// Parked aggregates are re-checked with every batch even without new
	// events: their gap may have been closed by another writer (e.g. a
	// rebuild writing through the alias), which turns the parked events
	// into no-ops or makes them applicable.
	p.mu.Lock()
	for t, s := range p.parts {
		for id := range s.parked {
			if _, ok := byID[id]; !ok {
				ids = append(ids, id)
				idTP[id] = t
				byID[id] = nil
			}
		}
	}
	p.mu.Unlock()
	p.inflightOldest.Store(oldest)
	defer p.inflightOldest.Store(0)

	for _, pr := range poison {
		if err := p.retry(ctx, "sending poison record to the DLQ", func() error { return p.dlq.Send(ctx, pr.rec, pr.reason) }); err != nil {
			return err
		}
		p.log.Warn("record sent to the DLQ", "topic", pr.rec.Topic, "partition", pr.rec.Partition, "offset", pr.rec.Offset, "reason", pr.reason)
		p.m.Events.WithLabelValues(p.proj.Name(), OutcomeDLQ).Inc()
	}

	var plans []*keyPlan
	err := p.retry(ctx, "applying batch", func() error {
		var err error
		plans, err = p.apply(ctx, ids, idTP, byID)
		return err
	})
	if err != nil {
		return err
	}
	p.finish(recs, plans)
	return nil
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

// parallelMin is the smallest amount of work parallel splits: below it
// the goroutines cost more than they save.
const parallelMin = 256

// parallel runs fn over [0,n) split into one contiguous range per CPU
// (GOMAXPROCS), or inline when n is small, and returns the first error.
func parallel(n int, fn func(lo, hi int) error) error {
	parts := min(runtime.GOMAXPROCS(0), n/parallelMin)
	if parts <= 1 {
		return fn(0, n)
	}
	errs := make([]error, parts)
	var wg sync.WaitGroup
	for k := range parts {
		wg.Go(func() { errs[k] = fn(k*n/parts, (k+1)*n/parts) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// apply folds the batch onto the current documents, writes the changed
// ones and sends unprojectable events to the DLQ. It is safe to repeat.
func (p *processor) apply(ctx context.Context, ids []string, idTP map[string]tp, byID map[string][]pending) ([]*keyPlan, error) {
	p.mu.Lock()
	events := make(map[string][]pending, len(ids))
	for _, id := range ids {
		var evs []pending
		if s := p.parts[idTP[id]]; s != nil {
			evs = append(evs, s.parked[id]...)
		}
		evs = append(evs, byID[id]...)
		sort.SliceStable(evs, func(i, j int) bool { return evs[i].env.Version < evs[j].env.Version })
		events[id] = evs
	}
	states := make(map[string]docState, len(ids))
	var missing []string
	for _, id := range ids {
		// Parked aggregates always read Elasticsearch: someone else may
		// have written the missing version.
		parked := false
		if s := p.parts[idTP[id]]; s != nil {
			parked = len(s.parked[id]) > 0
		}
		if st, ok := p.cache[id]; ok && !parked {
			states[id] = st
		} else {
			missing = append(missing, id)
		}
	}
	p.mu.Unlock()

	hits, err := p.store.MGet(ctx, missing)
	if err != nil {
		return nil, fmt.Errorf("fetching current documents: %w", err)
	}
	for _, id := range missing {
		st, err := p.decodeHit(id, hits[id])
		if err != nil {
			return nil, err
		}
		states[id] = st
	}
	plans := make([]*keyPlan, len(ids))
	if err := parallel(len(ids), func(lo, hi int) error {
		for i := lo; i < hi; i++ {
			id := ids[i]
			kp, err := p.fold(id, idTP[id], states[id], events[id])
			if err != nil {
				return err
			}
			plans[i] = kp
		}
		return nil
	}); err != nil {
		return nil, err
	}
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
		return nil, fmt.Errorf("writing documents: %w", err)
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
			return nil, fmt.Errorf("%w: bulk item %s: status %d: %s", esindex.ErrUnavailable, kp.id, r.Status, r.Err)
		}
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

type docMeta struct {
	LastEventID string `json:"last_event_id"`
}

func (p *processor) decodeHit(id string, hit esindex.Hit) (docState, error) {
	if hit.Source == nil {
		return docState{}, nil
	}
	d, err := p.proj.Decode(hit.Source)
	if err != nil {
		return docState{}, fmt.Errorf("document %s: %w", id, err)
	}
	var meta docMeta
	_ = json.Unmarshal(hit.Source, &meta)
	return docState{doc: d, version: hit.Version, lastEventID: meta.LastEventID}, nil
}

// fold applies evs (sorted by version) in memory to the stored document.
func (p *processor) fold(id string, t tp, st docState, evs []pending) (*keyPlan, error) {
	kp := &keyPlan{id: id, tp: t}
	cur, curVersion, lastEventID := st.doc, st.version, st.lastEventID
	changed := false
	for _, e := range evs {
		switch v := e.env.Version; {
		case v <= curVersion:
			if v == curVersion && e.env.EventID == lastEventID {
				kp.duplicate = append(kp.duplicate, e)
			} else {
				kp.stale = append(kp.stale, e)
			}
		case v == curVersion+1:
			next, err := p.proj.Apply(cur, e.env)
			if err != nil {
				if !errors.Is(err, projection.ErrUnprojectable) {
					return nil, fmt.Errorf("applying %s v%d to %s: %w", e.env.EventType, v, id, err)
				}
				kp.poison = append(kp.poison, poisonRec{rec: e.rec, reason: err.Error()})
				continue
			}
			cur, curVersion, lastEventID, changed = next, v, e.env.EventID, true
			kp.applied = append(kp.applied, e)
		default:
			kp.parked = append(kp.parked, e)
		}
	}
	if changed {
		doc, err := json.Marshal(cur)
		if err != nil {
			return nil, fmt.Errorf("encoding document %s: %w", id, err)
		}
		kp.op = &esindex.Op{ID: id, Version: curVersion, Doc: doc}
	}
	kp.final = docState{doc: cur, version: curVersion, lastEventID: lastEventID}
	return kp, nil
}

// finish records a handled batch: parked sets, handled offsets, metrics.
func (p *processor) finish(recs []*kgo.Record, plans []*keyPlan) {
	name := p.proj.Name()
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.cache)+len(plans) > p.cacheMax {
		clear(p.cache)
	}
	for _, kp := range plans {
		if kp.evict || kp.final.doc == nil {
			delete(p.cache, kp.id)
		} else {
			p.cache[kp.id] = kp.final
		}
		s := p.part(kp.tp)
		was := map[int64]bool{}
		for _, e := range s.parked[kp.id] {
			was[e.rec.Offset] = true
		}
		for _, e := range kp.parked {
			if !was[e.rec.Offset] {
				p.m.Events.WithLabelValues(name, OutcomeParked).Inc()
				p.m.VersionGaps.Inc()
				p.log.Warn("version gap: event parked", "aggregate_id", kp.id, "version", e.env.Version,
					"topic", e.rec.Topic, "partition", e.rec.Partition, "offset", e.rec.Offset)
			}
		}
		if len(kp.parked) > 0 {
			s.parked[kp.id] = kp.parked
		} else {
			if len(s.parked[kp.id]) > 0 {
				p.log.Info("version gap closed: key unparked", "aggregate_id", kp.id)
			}
			delete(s.parked, kp.id)
		}
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
	for _, rec := range recs {
		s := p.part(tp{rec.Topic, rec.Partition})
		if rec.Offset >= s.next.Offset {
			s.next = kgo.EpochOffset{Epoch: rec.LeaderEpoch, Offset: rec.Offset + 1}
		}
	}
	p.updateParkedGauge()
}

func (p *processor) updateParkedGauge() {
	n := 0
	for _, s := range p.parts {
		for _, evs := range s.parked {
			n += len(evs)
		}
	}
	p.parkedN = n
	p.m.Parked.WithLabelValues(p.proj.Name()).Set(float64(n))
}

// parkedEvents is the number of events parked behind version gaps.
func (p *processor) parkedEvents() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.parkedN
}

// toCommit returns the committable offsets that moved since the last
// commit, for the given partitions (all when nil).
func (p *processor) toCommit(only map[string][]int32) map[string]map[int32]kgo.EpochOffset {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := map[string]map[int32]kgo.EpochOffset{}
	want := func(t tp) bool {
		if only == nil {
			return true
		}
		for _, part := range only[t.topic] {
			if part == t.partition {
				return true
			}
		}
		return false
	}
	for t, s := range p.parts {
		if !want(t) {
			continue
		}
		off, ok := s.committable()
		if !ok || off.Offset == s.committed {
			continue
		}
		if out[t.topic] == nil {
			out[t.topic] = map[int32]kgo.EpochOffset{}
		}
		out[t.topic][t.partition] = off
	}
	return out
}

// committed records offsets Kafka acknowledged.
func (p *processor) committed(offs map[string]map[int32]kgo.EpochOffset) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for topic, ps := range offs {
		for part, off := range ps {
			if s := p.parts[tp{topic, part}]; s != nil {
				s.committed = off.Offset
			}
		}
	}
}

// drop forgets partitions (revoked after their commit, or lost).
func (p *processor) drop(parts map[string][]int32) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for topic, ps := range parts {
		for _, part := range ps {
			delete(p.parts, tp{topic, part})
		}
	}
	clear(p.cache) // only valid while the partitions are owned
	p.updateParkedGauge()
}

// oldestHeld is the recorded_at of the oldest record this worker holds
// without having finished it (batch in progress or parked); zero if none.
func (p *processor) oldestHeld() time.Time {
	oldest := p.inflightOldest.Load()
	p.mu.Lock()
	for _, s := range p.parts {
		for _, evs := range s.parked {
			for _, e := range evs {
				if n := e.env.RecordedAt.UnixNano(); oldest == 0 || n < oldest {
					oldest = n
				}
			}
		}
	}
	p.mu.Unlock()
	if oldest == 0 {
		return time.Time{}
	}
	return time.Unix(0, oldest)
}

// retry runs fn until it succeeds or ctx ends, sleeping with capped
// exponential backoff and jitter between attempts.
func (p *processor) retry(ctx context.Context, what string, fn func() error) error {
	for attempt := 0; ; attempt++ {
		err := fn()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%s: %w", what, ctx.Err())
		}
		d := p.retryPolicy.Delay(attempt)
		p.log.Warn("retrying", "what", what, "attempt", attempt+1, "backoff", d.String(), "err", err)
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%s: %w", what, ctx.Err())
		case <-t.C:
		}
	}
}

func partitionLabel(p int32) string { return strconv.Itoa(int(p)) }
