package projector

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"

	"cqrsflow/internal/esindex"
)

// write stores the changed documents with one bulk request. A version
// conflict makes the aggregate's events stale; a document Elasticsearch
// refuses for good, or one over esindex.MaxDocBytes, is written again event
// by event (writeEach) to find the event that breaks it. Any other failure
// is transient and fails the batch (handle repeats apply).
func (p *processor) write(ctx context.Context, plans []*keyPlan) error {
	var sendable, suspects []*keyPlan
	for _, kp := range plans {
		switch {
		case kp.op == nil:
		case len(kp.op.Doc) > esindex.MaxDocBytes:
			suspects = append(suspects, kp)
		default:
			sendable = append(sendable, kp)
		}
	}
	refused, err := p.bulk(ctx, sendable)
	if err != nil {
		return err
	}
	for _, kp := range append(suspects, refused...) {
		if err := p.writeEach(ctx, kp); err != nil {
			return err
		}
	}
	return nil
}

// bulk writes the plans' documents and returns the plans whose document
// Elasticsearch refused for good. When it refuses a whole request (one
// document can do that: an id over 512 bytes fails the request, not its
// item), the plans are halved until the culprit is alone, so one bad
// document costs O(log n) extra requests and the others are still written.
func (p *processor) bulk(ctx context.Context, plans []*keyPlan) ([]*keyPlan, error) {
	if len(plans) == 0 {
		return nil, nil
	}
	ops := make([]esindex.Op, len(plans))
	for i, kp := range plans {
		ops[i] = *kp.op
	}
	results, err := p.store.Bulk(ctx, ops)
	switch {
	case errors.Is(err, esindex.ErrRejected) && len(plans) == 1:
		return plans, nil
	case errors.Is(err, esindex.ErrRejected):
		half := len(plans) / 2
		a, err := p.bulk(ctx, plans[:half])
		if err != nil {
			return nil, err
		}
		b, err := p.bulk(ctx, plans[half:])
		return append(a, b...), err
	case err != nil:
		return nil, fmt.Errorf("writing documents: %w", err)
	}
	var refused []*keyPlan
	for i, r := range results {
		kp := plans[i]
		switch {
		case r.Conflict:
			// Elasticsearch holds this version or a newer one: a newer
			// writer won, our events were stale.
			kp.markStale(0)
		case r.Rejected():
			refused = append(refused, kp)
		case r.Err != "":
			return nil, fmt.Errorf("%w: bulk item %s: status %d: %s", esindex.ErrUnavailable, kp.id, r.Status, r.Err)
		}
	}
	return refused, nil
}

// markStale turns kp's applied events from the i-th on into stale ones
// and forgets the cached document.
func (kp *keyPlan) markStale(i int) {
	kp.stale = append(kp.stale, kp.applied[i:]...)
	kp.applied = kp.applied[:i]
	kp.evict, kp.op = true, nil
}

// writeEach writes kp's applied events one version at a time, from the
// document before the batch, to find the first one whose document
// Elasticsearch refuses (or that is too large): that event is poison and
// blocks the aggregate, the events after it are held. The versions before
// it are written, as they would have been one batch earlier.
func (p *processor) writeEach(ctx context.Context, kp *keyPlan) error {
	cur := kp.base
	for i, e := range kp.applied {
		next, err := p.proj.Apply(cur.doc, e.env)
		if err != nil {
			return fmt.Errorf("applying %s v%d to %s again: %w", e.env.EventType, e.env.Version, kp.id, err)
		}
		code, reason, stale, err := p.writeOne(ctx, kp.id, e.env.Version, next)
		switch {
		case err != nil:
			return err
		case stale:
			kp.markStale(i)
			kp.final = cur
			return nil
		case code != "":
			kp.refuse(i, cur, code, reason)
			return nil
		}
		cur = docState{doc: next, version: e.env.Version, lastEventID: e.env.EventID}
	}
	kp.final, kp.op = cur, nil
	return nil
}

// writeOne writes one version of a document. code and reason say why
// Elasticsearch refused it for good; stale that it holds that version or
// a newer one; err is a transient failure.
func (p *processor) writeOne(ctx context.Context, id string, version int64, doc any) (code, reason string, stale bool, err error) {
	b, err := json.Marshal(doc)
	if err != nil {
		return "", "", false, fmt.Errorf("encoding document %s: %w", id, err)
	}
	if len(b) > esindex.MaxDocBytes {
		return ReasonTooLarge, fmt.Sprintf("document of %d bytes, over the limit of %d", len(b), esindex.MaxDocBytes), false, nil
	}
	res, err := p.store.Bulk(ctx, []esindex.Op{{ID: id, Version: version, Doc: b}})
	switch {
	case errors.Is(err, esindex.ErrRejected):
		return ReasonRejected, err.Error(), false, nil
	case err != nil:
		return "", "", false, fmt.Errorf("writing document %s: %w", id, err)
	case res[0].Conflict:
		return "", "", true, nil
	case res[0].Rejected() && res[0].Status == http.StatusRequestEntityTooLarge:
		return ReasonTooLarge, fmt.Sprintf("elasticsearch %d: %s", res[0].Status, res[0].Err), false, nil
	case res[0].Rejected():
		return ReasonRejected, fmt.Sprintf("elasticsearch %d: %s", res[0].Status, res[0].Err), false, nil
	case res[0].Err != "":
		return "", "", false, fmt.Errorf("%w: bulk item %s: status %d: %s", esindex.ErrUnavailable, id, res[0].Status, res[0].Err)
	}
	return "", "", false, nil
}

// refuse makes kp's i-th applied event poison: the document stays at cur
// (already written), the aggregate is blocked at that event's version and
// every later event of the aggregate in the batch is held behind it.
func (kp *keyPlan) refuse(i int, cur docState, code, reason string) {
	e := kp.applied[i]
	held := append(append(append([]pending(nil), kp.applied[i+1:]...), kp.parked...), kp.held...)
	sort.SliceStable(held, func(a, b int) bool { return held[a].env.Version < held[b].env.Version })
	kp.applied, kp.parked, kp.held = kp.applied[:i], nil, held
	kp.poison = append(kp.poison, pendingPoison{poisonRec{rec: e.rec, code: code, reason: reason}, e.env.Version})
	kp.blockedAt, kp.blocker = e.env.Version, e.rec
	kp.final, kp.changed, kp.op = cur, cur.version > kp.base.version, nil
}
