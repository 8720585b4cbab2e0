package projector

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"cqrsflow/internal/envelope"
	"cqrsflow/internal/projection/products"
)

// brokenProjection fails every event with an error that is not
// unprojectable (a bug, not bad input).
type brokenProjection struct{ Projection }

func (brokenProjection) Apply(any, *envelope.Envelope) (any, error) {
	return nil, errors.New("projection bug")
}

func ev(id, typ string, version int64) pending {
	return pending{env: &envelope.Envelope{EventID: fmt.Sprintf("%s-%d", typ, version), EventType: typ, SchemaVersion: 1,
		AggregateType: "product", AggregateID: id, Version: version, OccurredAt: time.Unix(version, 0), RecordedAt: time.Unix(version, 0),
		Payload: []byte(pl)}}
}

// The fold sorts every event into one outcome against the document's
// version and last event id, and changes the document only by the
// events right after its version.
func TestFold(t *testing.T) {
	doc, err := products.Projection.Apply(nil, ev("a", products.Created, 1).env)
	if err != nil {
		t.Fatal(err)
	}
	atV1 := docState{doc: doc, version: 1, lastEventID: products.Created + "-1"}
	other := ev("a", products.Updated, 1)
	other.env.EventID = "someone-else"
	tests := []struct {
		name    string
		st      docState
		evs     []pending
		version int64 // final version
		changed bool
		counts  [5]int // applied, duplicate, stale, parked, poison
	}{
		{"new document", docState{}, []pending{ev("a", products.Created, 1), ev("a", products.Updated, 2)}, 2, true, [5]int{2, 0, 0, 0, 0}},
		{"duplicate and stale", atV1, []pending{other, ev("a", products.Created, 1)}, 1, false, [5]int{0, 1, 1, 0, 0}},
		{"gap parks the rest", atV1, []pending{ev("a", products.Updated, 3), ev("a", products.Updated, 4)}, 1, false, [5]int{0, 0, 0, 2, 0}},
		{"gap after applied", atV1, []pending{ev("a", products.Updated, 2), ev("a", products.Updated, 4)}, 2, true, [5]int{1, 0, 0, 1, 0}},
		{"unprojectable is skipped", atV1, []pending{ev("a", "ProductMelted", 2), ev("a", products.Updated, 2)}, 2, true, [5]int{1, 0, 0, 0, 1}},
		{"update without a document", docState{}, []pending{ev("a", products.Updated, 1)}, 0, false, [5]int{0, 0, 0, 0, 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, err := fold(products.Projection, "a", tc.st, tc.evs)
			if err != nil {
				t.Fatal(err)
			}
			got := [5]int{len(f.applied), len(f.duplicate), len(f.stale), len(f.parked), len(f.poison)}
			if got != tc.counts || f.final.version != tc.version || f.changed != tc.changed {
				t.Errorf("applied/duplicate/stale/parked/poison %v at v%d changed %v, want %v at v%d changed %v",
					got, f.final.version, f.changed, tc.counts, tc.version, tc.changed)
			}
			if tc.changed && f.final.lastEventID != f.applied[len(f.applied)-1].env.EventID {
				t.Errorf("last event id %q, want the last applied event's", f.final.lastEventID)
			}
		})
	}
	// Any other error from the projection aborts the fold instead of
	// dead-lettering the event: it says nothing about the event.
	if _, err := fold(brokenProjection{products.Projection}, "a", docState{}, []pending{ev("a", products.Created, 1)}); err == nil {
		t.Error("a projection error was swallowed")
	}
}
