package projector

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"cqrsflow/internal/esindex"
	"cqrsflow/internal/projection"
)

// ErrCannotSkip is returned by Skip when the version cannot be skipped
// (the document is past it, or an earlier version is still missing).
var ErrCannotSkip = errors.New("cannot skip")

// Redrive tuning: a worker that held an event of an aggregate just before
// it read the release writes that event to the DLQ after the redrive read
// it, so the released aggregates are looked at again once the workers
// caught up (redriveSettle), at most redrivePasses times in all. Whatever
// is still missed meets a version gap in the worker, which parks it and
// quarantines it again after PARK_TIMEOUT: visible, never lost.
const (
	redrivePasses = 3
	redriveSettle = 2 * time.Second
	redriveChunk  = 500 // aggregates per apply
)

// RedriveResult is what a redrive did to one aggregate.
type RedriveResult struct {
	AggregateID string `json:"aggregate_id"`
	FromVersion int64  `json:"from_version"` // the document's version before (0: none)
	ToVersion   int64  `json:"to_version"`   // and after
	// BlockedAt is the version the aggregate is still quarantined at (0:
	// it is not), with the reason.
	BlockedAt  int64  `json:"blocked_at,omitempty"`
	ReasonCode string `json:"reason_code,omitempty"`
	Reason     string `json:"reason,omitempty"`
	Released   bool   `json:"released"`
}

// RedriveReport is what Redrive returns.
type RedriveReport struct {
	Projection string          `json:"projection"`
	Aggregates []RedriveResult `json:"aggregates"`
	Records    int             `json:"records"` // dead letters run through the apply path
	Passes     int             `json:"passes"`
}

// Redrive applies the pending dead letters of the aggregates f selects
// (every pending record of such an aggregate, whatever its reason, so its
// versions apply in order) through the projector's own path: read the
// document, fold in version order, versioned _bulk. Records that fail
// again stay in the DLQ (written again only if their reason changed) and
// the aggregate stays quarantined at the first of them; an aggregate left
// with nothing pending is released. Redriving twice is a no-op.
func (a *DLQAdmin) Redrive(ctx context.Context, f DLQFilter) (*RedriveReport, error) {
	rep := &RedriveReport{Projection: a.proj.Name(), Aggregates: []RedriveResult{}}
	results := map[string]RedriveResult{}
	var only map[string]bool
	for rep.Passes < redrivePasses {
		rep.Passes++
		released, err := a.redrivePass(ctx, f, only, rep, results)
		if err != nil {
			return nil, err
		}
		if len(released) == 0 {
			break
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(redriveSettle):
		}
		only = released
	}
	for _, r := range results {
		rep.Aggregates = append(rep.Aggregates, r)
	}
	sort.Slice(rep.Aggregates, func(i, j int) bool { return rep.Aggregates[i].AggregateID < rep.Aggregates[j].AggregateID })
	return rep, nil
}

// redrivePass redrives once and returns the aggregates it released.
func (a *DLQAdmin) redrivePass(ctx context.Context, f DLQFilter, only map[string]bool, rep *RedriveReport,
	results map[string]RedriveResult) (map[string]bool, error) {
	all, quar, err := a.scan(ctx)
	if err != nil {
		return nil, err
	}
	recs := dedupe(all)
	sel := map[string]bool{}
	for _, r := range recs {
		if r.Status == StatusPending && f.match(r) && (only == nil || only[r.AggregateID]) {
			sel[r.AggregateID] = true
		}
	}
	for id, e := range quar {
		if (only == nil || only[id]) && (f.AggregateID == "" || id == f.AggregateID) && (f.Reason == "" || e.Reason == f.Reason) {
			sel[id] = true
		}
	}
	if len(sel) == 0 {
		return nil, nil
	}
	before, err := a.docVersions(ctx, sel)
	if err != nil {
		return nil, err
	}
	byID := map[string][]DLQRecord{}
	for _, r := range recs {
		if sel[r.AggregateID] && r.Status == StatusPending {
			byID[r.AggregateID] = append(byID[r.AggregateID], r)
		}
	}
	blocks, err := a.apply(ctx, sel, byID, recs)
	if err != nil {
		return nil, err
	}
	after, err := a.docVersions(ctx, sel)
	if err != nil {
		return nil, err
	}
	released := map[string]bool{}
	for id := range sel {
		res := RedriveResult{AggregateID: id, FromVersion: before[id], ToVersion: after[id]}
		if prev, ok := results[id]; ok {
			res.FromVersion = prev.FromVersion
		}
		rep.Records += len(byID[id])
		e, ok := a.stillBlocked(id, after[id], byID[id], blocks[id])
		q, quarantined := quar[id]
		switch {
		case ok:
			res.BlockedAt, res.ReasonCode, res.Reason = e.BlockedVersion, e.Reason, e.Detail
			if !quarantined || q.BlockedVersion != e.BlockedVersion || q.Reason != e.Reason {
				if err := a.putEntry(ctx, e); err != nil {
					return nil, err
				}
			}
		case quarantined:
			if err := a.release(ctx, q, 0); err != nil {
				return nil, err
			}
			res.Released, released[id] = true, true
		}
		results[id] = res
	}
	return released, nil
}

// apply runs the pending records of the selected aggregates through the
// processor, a chunk of aggregates at a time, and returns the aggregates
// it blocked (the first version that still fails).
func (a *DLQAdmin) apply(ctx context.Context, sel map[string]bool, byID map[string][]DLQRecord, recs []DLQRecord) (map[string]QuarantineEntry, error) {
	ids := make([]string, 0, len(sel))
	for id := range sel {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	existing := map[srcKey]DLQRecord{}
	for _, r := range recs {
		existing[srcKey{r.SourceTopic, r.SourcePartition, r.SourceOffset}] = r
	}
	sink := &quarantineSink{got: map[string]QuarantineEntry{}}
	dlq := &redriveDLQ{inner: &kafkaDLQ{cl: a.cl, projection: a.proj.Name()}, existing: existing}
	for start := 0; start < len(ids); start += redriveChunk {
		var batch []*kgo.Record
		for _, id := range ids[start:min(start+redriveChunk, len(ids))] {
			for _, r := range byID[id] {
				batch = append(batch, r.src)
			}
		}
		reg := NewMetrics(prometheus.NewRegistry())
		// A fresh processor per chunk: nothing parked carries over, and
		// gaps are never given up here (a missing version stays pending).
		p := newProcessor(a.proj, a.store, dlq, sink, newPartitions(reg.Parked.WithLabelValues(a.proj.Name())), reg, a.log,
			Config{ParkTimeout: math.MaxInt64, MaxParked: math.MaxInt})
		if err := p.handle(ctx, batch); err != nil {
			return nil, err
		}
	}
	return sink.got, nil
}

// stillBlocked says whether aggregate id, at document version doc after
// the redrive, is still blocked, and where: at the version the processor
// blocked it, or, when pending versions remain above a missing one, at the
// missing version.
func (a *DLQAdmin) stillBlocked(id string, doc int64, pending []DLQRecord, blocked QuarantineEntry) (QuarantineEntry, bool) {
	if blocked.BlockedVersion > 0 {
		return blocked, true
	}
	var top int64
	for _, r := range pending {
		top = max(top, r.Version)
	}
	if top <= doc {
		return QuarantineEntry{}, false
	}
	e := QuarantineEntry{Projection: a.proj.Name(), AggregateID: id, BlockedVersion: doc + 1, Reason: ReasonVersionGap,
		Detail: fmt.Sprintf("version %d is not in the DLQ; later versions are (skip it with `projector dlq skip --version %d` if it is lost)", doc+1, doc+1),
		Offset: -1, DLQPartition: -1, DLQOffset: -1, Since: time.Now().UTC()}
	if len(pending) > 0 {
		e.Topic, e.Partition = pending[0].SourceTopic, pending[0].SourcePartition
	}
	return e, true
}

type srcKey struct {
	topic     string
	partition int32
	offset    int64
}

// redriveDLQ writes a dead letter again only when its reason changed: a
// record that fails the same way is already in the DLQ.
type redriveDLQ struct {
	inner    DLQ
	existing map[srcKey]DLQRecord
}

func (d *redriveDLQ) Send(ctx context.Context, letters []*DeadLetter) error {
	var send []*DeadLetter
	for _, l := range letters {
		r, ok := d.existing[srcKey{l.Rec.Topic, l.Rec.Partition, l.Rec.Offset}]
		if ok && r.ReasonCode == l.Code && r.Reason == clipReason(l.Reason) {
			l.DLQPartition, l.DLQOffset = r.DLQPartition, r.DLQOffset
			continue
		}
		send = append(send, l)
	}
	return d.inner.Send(ctx, send)
}

// quarantineSink is the redrive's Quarantine: nothing is held by an
// earlier quarantine (every pending version is applied in order), and the
// blocks the processor finds are collected, not written.
type quarantineSink struct{ got map[string]QuarantineEntry }

func (*quarantineSink) Lookup([]string) map[string]QuarantineEntry { return nil }

func (s *quarantineSink) Put(_ context.Context, entries []QuarantineEntry) error {
	for _, e := range entries {
		s.got[e.AggregateID] = e
	}
	return nil
}

// putEntry writes a quarantine entry.
func (a *DLQAdmin) putEntry(ctx context.Context, e QuarantineEntry) error {
	v, err := json.Marshal(e)
	if err != nil {
		return err
	}
	rec := &kgo.Record{Topic: QuarantineTopic(a.topic), Key: quarantineKey(a.proj.Name(), e.AggregateID), Value: v}
	if err := a.cl.ProduceSync(ctx, rec).FirstErr(); err != nil {
		return fmt.Errorf("writing the quarantine entry of %s: %w", e.AggregateID, err)
	}
	return nil
}

// release ends q's quarantine: a record marked released (it says what was
// skipped, for the workers' metric and the log), then a tombstone so
// compaction forgets the aggregate.
func (a *DLQAdmin) release(ctx context.Context, q QuarantineEntry, skipped int64) error {
	q.Projection, q.Released, q.SkippedVersion, q.Since = a.proj.Name(), true, skipped, time.Now().UTC()
	v, err := json.Marshal(q)
	if err != nil {
		return err
	}
	key := quarantineKey(a.proj.Name(), q.AggregateID)
	topic := QuarantineTopic(a.topic)
	if err := a.cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Key: key, Value: v}, &kgo.Record{Topic: topic, Key: key}).FirstErr(); err != nil {
		return fmt.Errorf("releasing %s: %w", q.AggregateID, err)
	}
	a.log.Info("aggregate released from quarantine", "aggregate_id", q.AggregateID, "skipped_version", skipped)
	return nil
}

// SkipReport is what Skip returns: the redrive of the rest of the
// aggregate after the skip.
type SkipReport struct {
	AggregateID string         `json:"aggregate_id"`
	Skipped     int64          `json:"skipped_version"`
	EventID     string         `json:"skipped_event_id"`
	Redrive     *RedriveReport `json:"redrive"`
}

// Skip drops version of aggregate id on purpose: the document is written
// at that version with its content unchanged (external version, so it
// never overwrites a newer one; with no document, a deleted placeholder,
// since the event that would have created it is gone), the quarantine is
// released, and the aggregate's later dead letters are redriven.
func (a *DLQAdmin) Skip(ctx context.Context, id string, version int64) (*SkipReport, error) {
	all, quar, err := a.scan(ctx)
	if err != nil {
		return nil, err
	}
	hits, err := a.store.MGet(ctx, []string{id})
	if err != nil {
		return nil, fmt.Errorf("reading document %s: %w", id, err)
	}
	cur := hits[id]
	switch {
	case cur.Version >= version:
		return nil, fmt.Errorf("%w: document %s is at version %d, past version %d", ErrCannotSkip, id, cur.Version, version)
	case cur.Version < version-1:
		return nil, fmt.Errorf("%w: document %s is at version %d; version %d must be applied (redrive) or skipped first",
			ErrCannotSkip, id, cur.Version, cur.Version+1)
	}
	rep := &SkipReport{AggregateID: id, Skipped: version, EventID: fmt.Sprintf("skipped-v%d", version)}
	q, ok := quar[id]
	if !ok {
		q = QuarantineEntry{AggregateID: id, Offset: -1, DLQPartition: -1, DLQOffset: -1}
	}
	at := time.Now().UTC()
	for _, r := range all {
		if r.AggregateID == id && r.Version == version {
			if r.EventID != "" {
				rep.EventID = r.EventID
			}
			q.Topic, q.Partition = r.SourceTopic, r.SourcePartition
		}
	}
	doc, err := skippedDoc(id, version, rep.EventID, cur, at)
	if err != nil {
		return nil, err
	}
	res, err := a.store.Bulk(ctx, []esindex.Op{{ID: id, Version: version, Doc: doc}})
	switch {
	case err != nil:
		return nil, fmt.Errorf("writing document %s at version %d: %w", id, version, err)
	case res[0].Conflict:
		return nil, fmt.Errorf("%w: document %s reached version %d meanwhile", ErrCannotSkip, id, version)
	case res[0].Err != "":
		return nil, fmt.Errorf("writing document %s at version %d: status %d: %s", id, version, res[0].Status, res[0].Err)
	}
	a.log.Warn("event skipped by an operator: the document is at its version with the content it had before",
		"aggregate_id", id, "version", version, "event_id", rep.EventID)
	if err := a.release(ctx, q, version); err != nil {
		return nil, err
	}
	rep.Redrive, err = a.Redrive(ctx, DLQFilter{AggregateID: id})
	return rep, err
}

// skippedDoc is the document of id at version after skipping that
// version: the stored one with version and last_event_id moved on, or,
// without a stored one, a deleted placeholder of the fields every
// projection has (projection.Base).
func skippedDoc(id string, version int64, eventID string, cur esindex.Hit, at time.Time) ([]byte, error) {
	if cur.Source == nil {
		return json.Marshal(projection.Base{ID: id, Version: version, Deleted: true, CreatedAt: at, UpdatedAt: at,
			LastEventID: eventID, RecordedAt: at})
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(cur.Source, &m); err != nil {
		return nil, fmt.Errorf("decoding document %s: %w", id, err)
	}
	m["version"], _ = json.Marshal(version)
	m["last_event_id"], _ = json.Marshal(eventID)
	return json.Marshal(m)
}
