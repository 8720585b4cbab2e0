// Package envelope defines the event envelope that travels on Kafka: the
// JSON value, its headers and the topic naming of docs/architecture.md.
package envelope

import (
	"encoding/json"
	"errors"
	"fmt"
	fastjson "github.com/goccy/go-json"
	"time"
)

// ContentType is the content-type header value of every event record.
const ContentType = "application/json"

// Header names repeated on every Kafka record.
const (
	HeaderEventType     = "event_type"
	HeaderSchemaVersion = "schema_version"
	HeaderEventID       = "event_id"
	HeaderContentType   = "content-type"
)

// DefaultTopicPrefix is the topic prefix when none is configured.
const DefaultTopicPrefix = "cqrsflow"

// Metadata carries tracing and idempotency information of an event.
type Metadata struct {
	CorrelationID  string `json:"correlation_id,omitempty"`
	CausationID    string `json:"causation_id,omitempty"`
	IdempotencyKey string `json:"idempotency_key,omitempty"`
	RequestID      string `json:"request_id,omitempty"`
	Principal      string `json:"principal,omitempty"`
}

// Envelope is the Kafka value of every event (JSON).
type Envelope struct {
	EventID        string          `json:"event_id"`
	EventType      string          `json:"event_type"`
	SchemaVersion  int             `json:"schema_version"`
	AggregateType  string          `json:"aggregate_type"`
	AggregateID    string          `json:"aggregate_id"`
	Version        int64           `json:"version"`
	OccurredAt     time.Time       `json:"occurred_at"`
	RecordedAt     time.Time       `json:"recorded_at"`
	GlobalPosition int64           `json:"global_position"`
	Payload        json.RawMessage `json:"payload"`
	Metadata       Metadata        `json:"metadata"`
}

// Topic returns the event topic of an aggregate type: <prefix>.<type>.events.
func Topic(prefix, aggregateType string) string {
	if prefix == "" {
		prefix = DefaultTopicPrefix
	}
	return prefix + "." + aggregateType + ".events"
}

// DLQTopic returns the dead-letter topic of an event topic.
func DLQTopic(topic string) string { return topic + ".dlq" }

// Sentinel errors returned by Validate.
var ErrInvalid = errors.New("invalid envelope")

// Validate checks the fields every consumer relies on.
func (e *Envelope) Validate() error {
	var errs []error
	if e.EventID == "" {
		errs = append(errs, errors.New("event_id is empty"))
	}
	if e.EventType == "" {
		errs = append(errs, errors.New("event_type is empty"))
	}
	if e.SchemaVersion < 1 {
		errs = append(errs, errors.New("schema_version must be >= 1"))
	}
	if e.AggregateType == "" {
		errs = append(errs, errors.New("aggregate_type is empty"))
	}
	if e.AggregateID == "" {
		errs = append(errs, errors.New("aggregate_id is empty"))
	}
	if e.Version < 1 {
		errs = append(errs, errors.New("version must be >= 1"))
	}
	if len(e.Payload) == 0 || e.Payload[0] != '{' {
		errs = append(errs, errors.New("payload must be a JSON object"))
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %w", ErrInvalid, errors.Join(errs...))
	}
	return nil
}

// Decode parses and validates an envelope.
func Decode(b []byte) (*Envelope, error) {
	var e Envelope
	if err := fastjson.Unmarshal(b, &e); err != nil {
		return nil, fmt.Errorf("%w: decoding json: %w", ErrInvalid, err)
	}
	if err := e.Validate(); err != nil {
		return nil, err
	}
	return &e, nil
}
