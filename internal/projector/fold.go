package projector

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kgo"

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

// docState is a document as the fold sees it.
type docState struct {
	doc         any // nil: no document
	version     int64
	lastEventID string
}

// pending is an event with the record it arrived in: the record is what a
// dead letter carries and what the committed offset of a parked event
// points at. rec may be nil for events that did not come from Kafka.
type pending struct {
	env *envelope.Envelope
	rec *kgo.Record
	// bad is set for a record that failed to decode but whose aggregate
	// and version could be read (envelope.Identify): env then holds only
	// those. The fold dead-letters it and, if it is ahead of the
	// document, blocks the aggregate there.
	bad *poisonRec
}

// poisonRec is a record that cannot be projected, with the reason.
type poisonRec struct {
	rec    *kgo.Record
	code   string // one of Reasons
	reason string
}

// folded is what folding one aggregate's events onto its document gave:
// the document after them and every event sorted by outcome.
type folded struct {
	final     docState
	changed   bool // final is newer than the document folded onto
	applied   []pending
	duplicate []pending // the document's own last event again
	stale     []pending // older than the document
	parked    []pending // more than one version ahead: waiting for the gap to close
	poison    []pendingPoison
	// blockedAt is the version of a poison event ahead of the document
	// that nothing else filled: the aggregate is blocked there and held
	// holds its events after it, in version order.
	blockedAt int64
	blocker   *kgo.Record // the record of the blocking event
	held      []pending
}

// pendingPoison is a poison event with its version (0 if unknown).
type pendingPoison struct {
	poisonRec
	version int64
}

// fold applies evs, sorted by version, in memory to the document st of
// aggregate id. It is pure (no I/O, no state), so anything that has an
// aggregate's events and its stored document can reproduce what the
// projector writes. An event the projection rejects as unprojectable is
// poison; any other error from the projection aborts the fold.
//
// Poison at the document's next version blocks the aggregate: the events
// after it are held, never applied over the hole (order per aggregate is
// kept), unless another event of the same version fills it. Poison that
// is not ahead of the document (a bad redelivery of an applied version)
// blocks nothing.
func fold(proj Projection, id string, st docState, evs []pending) (folded, error) {
	var f folded
	cur, curVersion, lastEventID := st.doc, st.version, st.lastEventID
	block := func(e pending, code, reason string) {
		v := e.env.Version
		f.poison = append(f.poison, pendingPoison{poisonRec{rec: e.rec, code: code, reason: reason}, v})
		if v > curVersion && f.blockedAt == 0 {
			f.blockedAt, f.blocker = v, e.rec
		}
	}
	for _, e := range evs {
		v := e.env.Version
		if f.blockedAt > 0 && v > f.blockedAt {
			f.held = append(f.held, e)
			continue
		}
		if e.bad != nil {
			block(e, e.bad.code, e.bad.reason)
			continue
		}
		switch {
		case v <= curVersion:
			if v == curVersion && e.env.EventID == lastEventID {
				f.duplicate = append(f.duplicate, e)
			} else {
				f.stale = append(f.stale, e)
			}
		case v == curVersion+1:
			next, err := proj.Apply(cur, e.env)
			if err != nil {
				if !errors.Is(err, projection.ErrUnprojectable) {
					return folded{}, fmt.Errorf("applying %s v%d to %s: %w", e.env.EventType, v, id, err)
				}
				block(e, ReasonUnprojectable, err.Error())
				continue
			}
			cur, curVersion, lastEventID, f.changed = next, v, e.env.EventID, true
			f.applied = append(f.applied, e)
			if f.blockedAt != 0 && curVersion >= f.blockedAt { // another event of that version filled the hole
				f.blockedAt, f.blocker = 0, nil
			}
		default:
			f.parked = append(f.parked, e)
		}
	}
	f.final = docState{doc: cur, version: curVersion, lastEventID: lastEventID}
	return f, nil
}

// docMeta is the part of every projection's document the fold needs
// besides the version: the id of the event that produced it, which tells a
// duplicate from a different event with the same version.
type docMeta struct {
	LastEventID string `json:"last_event_id"`
}

// stateOf decodes a stored document of aggregate id (no document when
// hit has no source).
func stateOf(proj Projection, id string, hit esindex.Hit) (docState, error) {
	if hit.Source == nil {
		return docState{}, nil
	}
	d, err := proj.Decode(hit.Source)
	if err != nil {
		return docState{}, fmt.Errorf("document %s: %w", id, err)
	}
	var meta docMeta
	_ = json.Unmarshal(hit.Source, &meta)
	return docState{doc: d, version: hit.Version, lastEventID: meta.LastEventID}, nil
}
