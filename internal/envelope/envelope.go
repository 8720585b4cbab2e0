// Package envelope defines the event envelope that travels on Kafka: the
// JSON value, its headers and the topic naming of docs/architecture.md.
package envelope

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	fastjson "github.com/goccy/go-json"

	"cqrsflow/internal/jsonvalid"
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

// Limits of the identifiers. Elasticsearch refuses document ids longer
// than 512 bytes, and the aggregate id is the read models' document id, so
// an event with a longer one can never be projected. An event id is a UUID
// (36 bytes); the bound only keeps a hostile one out of the documents'
// last_event_id keyword.
const (
	MaxAggregateIDBytes = 512
	MaxEventIDBytes     = 256
)

// Sentinel errors returned by Decode and Validate. ErrIDTooLong wraps
// ErrInvalid: it is an invalid envelope that a consumer may want to tell
// apart (it can never be indexed, whatever is fixed downstream).
var (
	ErrInvalid   = errors.New("invalid envelope")
	ErrIDTooLong = fmt.Errorf("%w: aggregate_id longer than %d bytes", ErrInvalid, MaxAggregateIDBytes)
)

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
	if len(e.EventID) > MaxEventIDBytes {
		errs = append(errs, fmt.Errorf("event_id longer than %d bytes", MaxEventIDBytes))
	}
	if e.Version < 1 {
		errs = append(errs, errors.New("version must be >= 1"))
	}
	if len(e.Payload) == 0 || e.Payload[0] != '{' {
		errs = append(errs, errors.New("payload must be a JSON object"))
	}
	if len(e.AggregateID) > MaxAggregateIDBytes {
		// Reported alone: it is the one problem no fix downstream cures.
		return fmt.Errorf("%w (%d bytes)", ErrIDTooLong, len(e.AggregateID))
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %w", ErrInvalid, errors.Join(errs...))
	}
	return nil
}

// Decode parses and validates an envelope. The value must be valid JSON
// (RFC 8259): goccy/go-json, which decodes it fast, accepts some invalid
// input (a trailing comma in a nested object, for one), so a strict
// validator (internal/jsonvalid, answering as encoding/json.Valid at a
// fraction of its cost) checks it first and a malformed record is
// rejected instead of half-read.
func Decode(b []byte) (*Envelope, error) {
	if !jsonvalid.Valid(b) {
		return nil, fmt.Errorf("%w: decoding json: not valid JSON", ErrInvalid)
	}
	var e Envelope
	if err := fastjson.Unmarshal(b, &e); err != nil {
		return nil, fmt.Errorf("%w: decoding json: %w", ErrInvalid, err)
	}
	if err := e.Validate(); err != nil {
		return nil, err
	}
	return &e, nil
}

// Identity is what a consumer can still learn from a value that Decode
// rejects: whose event it was and at which version.
type Identity struct {
	AggregateType string
	AggregateID   string
	Version       int64
}

// Identify reads aggregate_type, aggregate_id and version from a value
// that may not be a valid envelope: other fields missing or of the wrong
// type, or malformed JSON — a trailing comma, a truncated record, garbage
// after the identity fields. ok is false unless it found a usable
// aggregate id (1 to MaxAggregateIDBytes bytes) and a version >= 1. It is
// for routing a bad record to its aggregate (callers should also check the
// record key agrees), never for projecting it.
//
// Valid JSON is read as Decode reads it. Malformed JSON is never handed
// to goccy/go-json, which can read past the end of such input: the
// top-level members are scanned (internal/jsonvalid) up to the first one
// that does not parse, with exact key names.
func Identify(b []byte) (id Identity, ok bool) {
	var rawType, rawID, rawVersion []byte
	if jsonvalid.Valid(b) {
		var raw struct {
			AggregateType fastjson.RawMessage `json:"aggregate_type"`
			AggregateID   fastjson.RawMessage `json:"aggregate_id"`
			Version       fastjson.RawMessage `json:"version"`
		}
		if fastjson.Unmarshal(b, &raw) != nil {
			return Identity{}, false
		}
		rawType, rawID, rawVersion = raw.AggregateType, raw.AggregateID, raw.Version
	} else {
		jsonvalid.Members(b, func(key string, v []byte) {
			switch key {
			case "aggregate_type":
				rawType = v
			case "aggregate_id":
				rawID = v
			case "version":
				rawVersion = v
			}
		})
	}
	// Each field on its own (valid JSON values by now), so one of the
	// wrong type spoils only itself.
	_ = fastjson.Unmarshal(rawType, &id.AggregateType)
	if fastjson.Unmarshal(rawID, &id.AggregateID) != nil || fastjson.Unmarshal(rawVersion, &id.Version) != nil {
		return Identity{}, false
	}
	if id.AggregateID == "" || len(id.AggregateID) > MaxAggregateIDBytes || id.Version < 1 {
		return Identity{}, false
	}
	return id, true
}
