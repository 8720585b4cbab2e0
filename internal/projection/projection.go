// Package projection holds what the read-model projections share. Each
// subpackage (products, orders) is pure: it folds an event envelope onto the
// current document and returns the new document, with no I/O. The projector
// runtime (internal/projector) handles versions, batching and Elasticsearch.
package projection

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"cqrsflow/internal/envelope"
)

// ErrUnprojectable marks an event that can never be projected (unknown
// event type, payload that does not decode, event that cannot start or
// continue a document). The runtime sends such records to the DLQ.
var ErrUnprojectable = errors.New("event cannot be projected")

// Unprojectable returns an error wrapping ErrUnprojectable.
func Unprojectable(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrUnprojectable, fmt.Sprintf(format, args...))
}

// DecodePayload strictly decodes an event payload into v (unknown fields are
// tolerated for forward compatibility, wrong types are not).
func DecodePayload(env *envelope.Envelope, v any) error {
	if err := json.Unmarshal(env.Payload, v); err != nil {
		return Unprojectable("decoding %s payload: %v", env.EventType, err)
	}
	return nil
}

// Base holds the fields every projected document carries.
type Base struct {
	ID          string    `json:"id"`
	Version     int64     `json:"version"`
	Deleted     bool      `json:"deleted"`
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
	LastEventID string    `json:"last_event_id"`
	RecordedAt  time.Time `json:"recorded_at"`
}

// Advance records env as the last event applied to the document.
func (b *Base) Advance(env *envelope.Envelope) {
	b.Version = env.Version
	b.UpdatedAt = env.OccurredAt.UTC()
	b.LastEventID = env.EventID
	b.RecordedAt = env.RecordedAt.UTC()
}

// Start initialises the base of a new document from its first event.
func Start(env *envelope.Envelope) Base {
	b := Base{ID: env.AggregateID, CreatedAt: env.OccurredAt.UTC()}
	b.Advance(env)
	return b
}
