package projector

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"cqrsflow/internal/envelope"
	"cqrsflow/internal/esindex"
	"cqrsflow/internal/projection"
)

// Verification proves the read model against the event store: an
// aggregate's events, read from PostgreSQL and built into the envelope the
// relay publishes (envelope.AppendJSON), are folded with fold — the
// processor's own pure fold — and the result is compared with the stored
// document (verify*.go). The results, the result label of
// cqrsflow_projection_verified_total:
const (
	// ResultEqual: the document is what the events fold into.
	ResultEqual = "equal"
	// ResultInFlight: the document differs, but the aggregate has events
	// the projection cannot have applied yet (younger than its sync lag
	// plus a margin, or still in the outbox). Not drift.
	ResultInFlight = "in_flight"
	// ResultQuarantined: the document is what the events before a held
	// version fold into, and that version is held on purpose: the
	// projection quarantined the aggregate, the fold refuses the event,
	// or the relay dead-lettered it. Not drift; `projector dlq` releases it.
	ResultQuarantined = "quarantined"
	// ResultSkipped: the document is what the events fold into once the
	// events an operator skipped (`projector dlq skip`, or `outbox-relay
	// dead discard`) are left out. Not drift.
	ResultSkipped = "skipped"
	// ResultMissing: events, no document.
	ResultMissing = "missing"
	// ResultStale: the document's version is below the folded one.
	ResultStale = "stale"
	// ResultDifferent: same version, other content (or a document ahead
	// of every event, which no event can have written).
	ResultDifferent = "different"
	// ResultUnexpected: a document whose aggregate has no events.
	ResultUnexpected = "unexpected"
)

// Results lists every result, in report order.
var Results = []string{ResultEqual, ResultInFlight, ResultQuarantined, ResultSkipped,
	ResultMissing, ResultStale, ResultDifferent, ResultUnexpected}

// IsDrift reports whether result is a difference nothing explains.
func IsDrift(result string) bool {
	switch result {
	case ResultMissing, ResultStale, ResultDifferent, ResultUnexpected:
		return true
	}
	return false
}

// Check is the verification of one aggregate.
type Check struct {
	AggregateID string `json:"aggregate_id"`
	Result      string `json:"result"`
	// EventVersion is the aggregate's latest version in the event store
	// (0: no events), ExpectedVersion the version of the document the
	// events fold into (below EventVersion when a version is held),
	// DocumentVersion the stored document's version (0: none).
	EventVersion    int64       `json:"event_version"`
	ExpectedVersion int64       `json:"expected_version"`
	DocumentVersion int64       `json:"document_version"`
	LatestEventAt   *time.Time  `json:"latest_event_at,omitempty"`
	Diffs           []FieldDiff `json:"diffs,omitempty"`
	// Note says what explains an explained result, or what the
	// difference is when no field shows it.
	Note string `json:"note,omitempty"`

	expected []byte          // the expected document (nil: none), what repair writes
	ref      *esindex.DocRef // an unexpected document, for a repair that deletes it
}

// FieldDiff is one field whose value differs: as the events fold it and
// as stored (JSON; absent when the field is missing on that side).
type FieldDiff struct {
	Field    string          `json:"field"`
	Expected json.RawMessage `json:"expected,omitempty"`
	Actual   json.RawMessage `json:"actual,omitempty"`
}

// heldVersion is a version of an aggregate that the projection does not
// apply as the events fold, as the verification learns it from the
// quarantine topic and the relay's tables.
type heldVersion struct {
	version int64
	kind    holdKind
	why     string
}

type holdKind int

const (
	// holdUnapplied: the projection never got the event (the relay holds
	// or discarded it). As for an event the fold refuses, the aggregate
	// stops there unless an operator skipped it, which a stored document
	// past it tells.
	holdUnapplied holdKind = iota
	// holdBlocked: the projection quarantined the aggregate at this
	// version; nothing after it is applied.
	holdBlocked
	// holdSkipped: an operator skipped this version (dlq skip).
	holdSkipped
)

// aggFold is one aggregate's verification while its events stream by:
// the expected document so far, the stored one, and what is held. Only
// the current document is kept, so an aggregate's event count does not
// bound memory.
type aggFold struct {
	id        string
	st        docState    // the expected document so far
	stored    esindex.Hit // Source nil: no document
	storedDoc any         // stored decoded (nil: none or undecodable)
	storedErr error       // why the stored document does not decode
	storedAt  time.Time   // the stored document's created_at (a skip placeholder's time)
	held      map[int64]heldVersion

	latest    int64     // the latest event's version
	latestAt  time.Time // and its recorded_at
	blockedAt int64     // a version that blocks: later events are not applied
	skipped   []int64
	notes     []string
	foldErr   error
}

func newAggFold(proj Projection, id string, stored esindex.Hit, held []heldVersion) *aggFold {
	a := &aggFold{id: id, stored: stored}
	if stored.Source != nil {
		a.storedDoc, a.storedErr = proj.Decode(stored.Source)
		var base projection.Base
		if json.Unmarshal(stored.Source, &base) == nil {
			a.storedAt = base.CreatedAt
		}
	}
	for _, h := range held {
		if a.held == nil {
			a.held = map[int64]heldVersion{}
		}
		if cur, ok := a.held[h.version]; !ok || h.kind > cur.kind {
			a.held[h.version] = h
		}
	}
	return a
}

// add folds the next event (versions in order). row is the event store
// row; it is built into the envelope exactly as the relay publishes it
// and decoded as the processor decodes it.
func (a *aggFold) add(proj Projection, row *envelope.Row) {
	v := row.Version
	a.latest, a.latestAt = v, row.RecordedAt
	if a.blockedAt > 0 || a.foldErr != nil {
		return
	}
	if h, ok := a.held[v]; ok {
		switch h.kind {
		case holdSkipped:
			a.skip(proj, v, row.EventID, h.why)
		case holdBlocked:
			a.block(v, h.why)
		default:
			a.unapplied(proj, v, row.EventID, h.why)
		}
		return
	}
	e := decodeRow(proj, row)
	f, err := fold(proj, a.id, a.st, []pending{e})
	switch {
	case err != nil:
		a.foldErr = err
	case len(f.poison) > 0:
		a.unapplied(proj, v, row.EventID, "the projection refuses it ("+f.poison[0].code+": "+f.poison[0].reason+")")
	case len(f.applied) == 1:
		a.st = f.final
	default: // a version gap in the event store itself
		a.block(v, fmt.Sprintf("version %d follows version %d in the event store", v, a.st.version))
	}
}

// decodeRow is the event the processor would get for row: the relay's
// envelope, strictly decoded. One that does not build or decode is bad,
// as the processor marks a record it cannot decode.
func decodeRow(proj Projection, row *envelope.Row) pending {
	b, err := envelope.AppendJSON(nil, row)
	if err == nil {
		var env *envelope.Envelope
		if env, err = envelope.Decode(b); err == nil && env.AggregateType != proj.AggregateType() {
			err = wrongAggregate(env.AggregateType, proj.AggregateType())
		}
		if err == nil {
			return pending{env: env}
		}
	}
	return pending{env: &envelope.Envelope{AggregateType: row.AggregateType, AggregateID: row.AggregateID, Version: row.Version},
		bad: &poisonRec{code: classifyDecode(err), reason: err.Error()}}
}

// unapplied handles a version the projection cannot apply: an event the
// fold refuses, or one that never reached it. The processor blocks the
// aggregate there (quarantine, or a version gap that becomes one); only
// `dlq skip` moves the document past it. So a stored document at or
// above that version tells that it was skipped.
func (a *aggFold) unapplied(proj Projection, v int64, eventID, why string) {
	if a.stored.Source != nil && a.stored.Version >= v {
		a.skip(proj, v, eventID, fmt.Sprintf("version %d skipped: %s", v, why))
		return
	}
	a.block(v, fmt.Sprintf("held at version %d: %s", v, why))
}

func (a *aggFold) block(v int64, why string) {
	a.blockedAt = v
	a.notes = append(a.notes, why)
}

// skip moves the expected document to version v with its content
// unchanged, as `projector dlq skip` writes it (skippedDoc): version and
// last_event_id move on; without a document, a deleted placeholder whose
// times are the moment of the skip, which only the stored document knows.
func (a *aggFold) skip(proj Projection, v int64, eventID, why string) {
	if a.stored.Version == v {
		// The skip names the event by its dead letter's id, or
		// skipped-v<N> when it had none.
		var meta docMeta
		if json.Unmarshal(a.stored.Source, &meta) == nil && meta.LastEventID == fmt.Sprintf("skipped-v%d", v) {
			eventID = meta.LastEventID
		}
	}
	var cur esindex.Hit
	if a.st.doc != nil {
		src, err := json.Marshal(a.st.doc)
		if err != nil {
			a.foldErr = err
			return
		}
		cur = esindex.Hit{Version: a.st.version, Source: src}
	}
	at := a.storedAt
	if at.IsZero() {
		at = time.Unix(0, 0).UTC()
	}
	b, err := skippedDoc(a.id, v, eventID, cur, at)
	if err == nil {
		var d any
		if d, err = proj.Decode(b); err == nil {
			a.st = docState{doc: d, version: v, lastEventID: eventID}
		}
	}
	if err != nil {
		a.foldErr = fmt.Errorf("skipping version %d: %w", v, err)
		return
	}
	a.skipped = append(a.skipped, v)
	a.notes = append(a.notes, why)
}

// classify compares the expected document with the stored one.
// inFlight tells whether the aggregate has events the projection may not
// have applied yet.
func (a *aggFold) classify(inFlight bool) Check {
	c := Check{AggregateID: a.id, EventVersion: a.latest, ExpectedVersion: a.st.version, DocumentVersion: a.stored.Version}
	if a.latest > 0 {
		at := a.latestAt.UTC()
		c.LatestEventAt = &at
	}
	if a.st.doc != nil {
		if b, err := json.Marshal(a.st.doc); err == nil {
			c.expected = b
		} else if a.foldErr == nil {
			a.foldErr = err
		}
	}
	c.Result, c.Diffs = a.compare()
	switch {
	case a.foldErr != nil:
		c.Result, c.expected = ResultDifferent, nil // nothing to repair with
		a.notes = append(a.notes, "the events do not fold: "+a.foldErr.Error())
	case IsDrift(c.Result) && inFlight:
		c.Result = ResultInFlight
	case c.Result == ResultEqual && a.blockedAt > 0:
		c.Result = ResultQuarantined
	case c.Result == ResultEqual && len(a.skipped) > 0:
		c.Result = ResultSkipped
	}
	if len(a.notes) > 0 {
		c.Note = joinNotes(a.notes)
	}
	return c
}

func joinNotes(notes []string) string {
	var b bytes.Buffer
	for i, n := range notes {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(n)
	}
	return b.String()
}

// compare returns the result of comparing the expected document with the
// stored one, and the fields that differ.
func (a *aggFold) compare() (string, []FieldDiff) {
	switch {
	case a.st.doc == nil && a.stored.Source == nil:
		return ResultEqual, nil
	case a.stored.Source == nil:
		return ResultMissing, nil
	case a.st.doc == nil:
		// Events, but none the projection can apply (a blocked first
		// version), and still a document.
		return ResultDifferent, []FieldDiff{{Field: "_version", Actual: jsonOf(a.stored.Version)}}
	}
	if a.storedErr != nil {
		a.notes = append(a.notes, "the document does not decode: "+a.storedErr.Error())
		return ResultDifferent, nil
	}
	diffs, err := diffDocs(a.st.doc, a.storedDoc)
	if err != nil {
		a.foldErr = err
		return ResultDifferent, nil
	}
	if a.stored.Version != a.st.version {
		diffs = append([]FieldDiff{{Field: "_version", Expected: jsonOf(a.st.version), Actual: jsonOf(a.stored.Version)}}, diffs...)
	}
	switch {
	case a.stored.Version < a.st.version:
		return ResultStale, diffs
	case a.stored.Version > a.st.version:
		a.notes = append(a.notes, "the document is ahead of every event that can be applied")
		return ResultDifferent, diffs
	case len(diffs) > 0:
		return ResultDifferent, diffs
	}
	return ResultEqual, nil
}

// diffDocs compares two documents of one projection field by field: each
// is encoded as the projection's document type encodes it, so a value
// differs only if it means something else (a stored time in another zone
// or 9.50 for 9.5 reads as equal). Fields the type does not know are not
// compared: the indices' strict mappings refuse them.
func diffDocs(expected, actual any) ([]FieldDiff, error) {
	e, err := fieldsOf(expected)
	if err != nil {
		return nil, err
	}
	s, err := fieldsOf(actual)
	if err != nil {
		return nil, err
	}
	keys := make([]string, 0, len(e)+len(s))
	for k := range e {
		keys = append(keys, k)
	}
	for k := range s {
		if _, ok := e[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	var out []FieldDiff
	for _, k := range keys {
		if !bytes.Equal(e[k], s[k]) {
			out = append(out, FieldDiff{Field: k, Expected: e[k], Actual: s[k]})
		}
	}
	return out, nil
}

func fieldsOf(doc any) (map[string]json.RawMessage, error) {
	b, err := json.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("encoding document: %w", err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("reading document fields: %w", err)
	}
	return m, nil
}

func jsonOf(v any) json.RawMessage {
	b, _ := json.Marshal(v)
	return b
}
