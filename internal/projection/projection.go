// Package projection holds what the read-model projections share. Each
// subpackage (products, orders) is pure: it folds an event envelope onto the
// current document and returns the new document, with no I/O. The projector
// runtime (internal/projector) handles versions, batching and Elasticsearch.
package projection

import (
	"errors"
	"fmt"
	fastjson "github.com/goccy/go-json"
	"time"

	"cqrsflow/internal/envelope"
	"cqrsflow/schemas"
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
	if err := fastjson.Unmarshal(env.Payload, v); err != nil {
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

// Adapter turns a pure fold over one document type into what the projector
// runtime consumes (internal/projector.Projection): documents travel as
// *D, the mapping is read from the embedded schemas/elasticsearch files.
type Adapter[D any] struct {
	ProjectionName string // projection and alias name, e.g. "products"
	Aggregate      string // aggregate type whose topic it consumes
	MappingFile    string // path inside schemas.Elasticsearch
	// MappingJSON is the create-index body itself, for a projection whose
	// mapping is not one of the repository's files (it wins over
	// MappingFile).
	MappingJSON []byte
	// Fold returns the document after env; cur is nil when there is none.
	Fold func(cur *D, env *envelope.Envelope) (*D, error)
}

// Name is the projection (and alias) name.
func (a Adapter[D]) Name() string { return a.ProjectionName }

// AggregateType is the aggregate whose topic the projection consumes.
func (a Adapter[D]) AggregateType() string { return a.Aggregate }

// Mapping is the create-index body.
func (a Adapter[D]) Mapping() ([]byte, error) {
	if a.MappingJSON != nil {
		return a.MappingJSON, nil
	}
	return schemas.Elasticsearch.ReadFile(a.MappingFile)
}

// Decode parses a stored document.
func (a Adapter[D]) Decode(source []byte) (any, error) {
	var d D
	if err := fastjson.Unmarshal(source, &d); err != nil {
		return nil, fmt.Errorf("decoding %s document: %w", a.ProjectionName, err)
	}
	return &d, nil
}

// Apply folds env onto current (nil or *D).
func (a Adapter[D]) Apply(current any, env *envelope.Envelope) (any, error) {
	var cur *D
	if current != nil {
		c, ok := current.(*D)
		if !ok {
			return nil, fmt.Errorf("%s: document of type %T", a.ProjectionName, current)
		}
		cur = c
	}
	d, err := a.Fold(cur, env)
	if err != nil {
		return nil, err
	}
	return d, nil
}
