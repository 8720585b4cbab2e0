package projector

import (
	"context"
	"fmt"
	"time"

	"cqrsflow/internal/envelope"
	"cqrsflow/internal/esindex"
)

// Defaults of the verification.
const (
	// DefaultVerifyPageRows bounds the events held in memory at once: a
	// verification reads the event store in pages of this many rows.
	DefaultVerifyPageRows = 2000
	// DefaultVerifyMargin is added to the sync lag: an event younger than
	// both may be on its way (relay, Kafka, the worker's batch) and does
	// not count as drift.
	DefaultVerifyMargin = 10 * time.Second
	// confirmBatch is how many drift candidates are held before they are
	// checked again.
	confirmBatch = 256
)

// VerifyStats says how much a verification read.
type VerifyStats struct {
	Aggregates int   `json:"aggregates"`
	Events     int64 `json:"events_read"`
	Pages      int   `json:"pages"`
	// MaxRowsHeld is the most event rows held in memory at once: at most
	// the page size, whatever the store's size.
	MaxRowsHeld int `json:"max_rows_held"`
	Rechecked   int `json:"rechecked"`
}

// verifier checks aggregates of one projection: it streams their events
// from the event store, reads their documents, folds and compares
// (verify.go).
type verifier struct {
	proj   Projection
	events EventStore
	store  Store
	// holds returns what else is known to be held or skipped per
	// aggregate (the quarantine topic); nil: nothing.
	holds func(ids []string) map[string][]heldVersion
	// cutoff returns the moment after which an event may not be applied
	// yet (the oldest record the group has not committed, or now when it
	// is caught up, less the margin), read at the start of every pass.
	cutoff func(ctx context.Context) (time.Time, error)
	// busy reports an aggregate the caller knows to be in flight (a
	// worker's parked aggregates); nil: none.
	busy     func(id string) bool
	pageRows int
	stats    VerifyStats
}

// check verifies the aggregates of ids (nil: every aggregate of the
// projection) and hands each result to emit. A difference is checked a
// second time before it is handed on (events and document read again,
// with a fresh cutoff), so a write that raced the first reading is not
// reported as drift. Ids without events are returned (their documents,
// if any, are unexpected: the caller decides).
func (v *verifier) check(ctx context.Context, ids []string, emit func(Check) error) (noEvents []string, err error) {
	var candidates []string
	confirm := func() error {
		if len(candidates) == 0 {
			return nil
		}
		v.stats.Rechecked += len(candidates)
		again := candidates
		candidates = nil
		_, err := v.pass(ctx, again, func(c Check) error { return emit(c) })
		return err
	}
	noEvents, err = v.pass(ctx, ids, func(c Check) error {
		v.stats.Aggregates++
		if !IsDrift(c.Result) {
			return emit(c)
		}
		if candidates = append(candidates, c.AggregateID); len(candidates) >= confirmBatch {
			return confirm()
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return noEvents, confirm()
}

// pass reads the events of ids (nil: all) page by page, folds each
// aggregate onto nothing while holding its stored document, and emits one
// Check per aggregate with events. Only one aggregate's fold crosses a
// page boundary, so memory is bounded by the page size.
func (v *verifier) pass(ctx context.Context, ids []string, emit func(Check) error) ([]string, error) {
	cutoff, err := v.cutoff(ctx)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var (
		cur     *aggFold
		afterID string
		afterV  int64
		done    []*aggFold
	)
	for {
		rows, err := v.events.Events(ctx, ids, afterID, afterV, v.pageRows)
		if err != nil {
			return nil, err
		}
		v.stats.Pages++
		v.stats.Events += int64(len(rows))
		v.stats.MaxRowsHeld = max(v.stats.MaxRowsHeld, len(rows))
		hits, held, err := v.pageState(ctx, rows, cur)
		if err != nil {
			return nil, err
		}
		for i := range rows {
			r := &rows[i]
			if cur == nil || r.AggregateID != cur.id {
				if cur != nil {
					done = append(done, cur)
				}
				cur = newAggFold(v.proj, r.AggregateID, hits[r.AggregateID], held[r.AggregateID])
				if ids != nil {
					seen[r.AggregateID] = true
				}
			}
			cur.add(v.proj, r)
		}
		if err := v.finish(ctx, done, cutoff, emit); err != nil {
			return nil, err
		}
		done = done[:0]
		if len(rows) < v.pageRows {
			break
		}
		afterID, afterV = rows[len(rows)-1].AggregateID, rows[len(rows)-1].Version
	}
	if cur != nil {
		if err := v.finish(ctx, []*aggFold{cur}, cutoff, emit); err != nil {
			return nil, err
		}
	}
	var noEvents []string
	for _, id := range ids {
		if !seen[id] {
			noEvents = append(noEvents, id)
		}
	}
	return noEvents, nil
}

// pageState reads what folding a page needs besides its events: the
// stored documents of the aggregates that start in it, and their held
// versions (the relay's dead letters and discards, the quarantine).
func (v *verifier) pageState(ctx context.Context, rows []envelope.Row, cur *aggFold) (map[string]esindex.Hit, map[string][]heldVersion, error) {
	var ids []string
	last := ""
	if cur != nil {
		last = cur.id
	}
	for i := range rows {
		if id := rows[i].AggregateID; id != last {
			ids = append(ids, id)
			last = id
		}
	}
	if len(ids) == 0 {
		return nil, nil, nil
	}
	hits, err := v.store.MGet(ctx, ids)
	if err != nil {
		return nil, nil, fmt.Errorf("reading documents: %w", err)
	}
	held, err := v.events.RelayHeld(ctx, ids)
	if err != nil {
		return nil, nil, err
	}
	if v.holds != nil {
		for id, hs := range v.holds(ids) {
			held[id] = append(held[id], hs...)
		}
	}
	return hits, held, nil
}

// finish classifies folded aggregates. Those that differ are in flight
// when their latest event is younger than cutoff, the caller knows them
// busy, or the outbox still holds some of their events.
func (v *verifier) finish(ctx context.Context, folds []*aggFold, cutoff time.Time, emit func(Check) error) error {
	checks := make([]Check, len(folds))
	var differ []string
	for i, a := range folds {
		young := a.latestAt.After(cutoff) || (v.busy != nil && v.busy(a.id))
		checks[i] = a.classify(young)
		if IsDrift(checks[i].Result) {
			differ = append(differ, a.id)
		}
	}
	if len(differ) > 0 {
		unpublished, err := v.events.Unpublished(ctx, differ)
		if err != nil {
			return err
		}
		for i := range checks {
			if IsDrift(checks[i].Result) && unpublished[checks[i].AggregateID] {
				checks[i].Result = ResultInFlight
				checks[i].Note = joinNotes(append([]string{"events still in the outbox"}, nonEmpty(checks[i].Note)...))
			}
		}
	}
	for _, c := range checks {
		if err := emit(c); err != nil {
			return err
		}
	}
	return nil
}

func nonEmpty(s string) []string {
	if s == "" {
		return nil
	}
	return []string{s}
}

// unexpected checks documents: each whose aggregate has no events is a
// Check with result unexpected.
func (v *verifier) unexpected(ctx context.Context, docs []esindex.DocRef, emit func(Check) error) error {
	if len(docs) == 0 {
		return nil
	}
	ids := make([]string, len(docs))
	for i, d := range docs {
		ids[i] = d.ID
	}
	exist, err := v.events.Existing(ctx, ids)
	if err != nil {
		return err
	}
	for _, d := range docs {
		if exist[d.ID] {
			continue
		}
		v.stats.Aggregates++
		if err := emit(Check{AggregateID: d.ID, Result: ResultUnexpected, DocumentVersion: d.Version,
			Note: "a document whose aggregate has no events", ref: &d}); err != nil {
			return err
		}
	}
	return nil
}
