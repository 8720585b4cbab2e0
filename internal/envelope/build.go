package envelope

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	fastjson "github.com/goccy/go-json"
)

// Row is an event as the event store holds it (the events table, and the
// copy an outbox row carries): the columns its envelope is built from.
// Payload and Metadata are the JSON text of the events row's jsonb.
//
// The relay publishes AppendJSON of its outbox rows, and the projector's
// verification folds AppendJSON of the events rows: both sides must build
// the same envelope, so the one function lives here.
type Row struct {
	AggregateType  string
	AggregateID    string
	GlobalPosition int64
	EventID        string
	EventType      string
	SchemaVersion  int
	Version        int64
	Payload        []byte
	Metadata       []byte
	OccurredAt     time.Time
	RecordedAt     time.Time
}

// AppendJSON appends the Envelope JSON of r to b: the same fields and
// formats as json.Marshal (RFC 3339 UTC times), written by hand, without
// reflection and without re-compacting the payload. Metadata is decoded
// into Metadata (goccy/go-json) and re-encoded by appendMetadata, so only
// its known keys travel.
//
// The payload is PostgreSQL's jsonb output when the event store wrote the
// row, but the outbox column is text, and a row written any other way
// may hold anything: it is checked (json.Valid, one more scan of the
// payload), because a record that is not JSON would be accepted by Kafka
// and fail every consumer.
func AppendJSON(b []byte, r *Row) ([]byte, error) {
	payload := bytes.TrimSpace(r.Payload)
	if len(payload) == 0 || payload[0] != '{' || !json.Valid(payload) {
		return nil, fmt.Errorf("event %s: payload is not a JSON object", r.EventID)
	}
	var meta Metadata
	if len(r.Metadata) > 0 {
		if err := fastjson.Unmarshal(r.Metadata, &meta); err != nil {
			return nil, fmt.Errorf("event %s: decoding metadata: %w", r.EventID, err)
		}
	}
	b = append(b, `{"event_id":`...)
	b = appendString(b, r.EventID)
	b = append(b, `,"event_type":`...)
	b = appendString(b, r.EventType)
	b = append(b, `,"schema_version":`...)
	b = strconv.AppendInt(b, int64(r.SchemaVersion), 10)
	b = append(b, `,"aggregate_type":`...)
	b = appendString(b, r.AggregateType)
	b = append(b, `,"aggregate_id":`...)
	b = appendString(b, r.AggregateID)
	b = append(b, `,"version":`...)
	b = strconv.AppendInt(b, r.Version, 10)
	b = append(b, `,"occurred_at":"`...)
	b = r.OccurredAt.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","recorded_at":"`...)
	b = r.RecordedAt.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","global_position":`...)
	b = strconv.AppendInt(b, r.GlobalPosition, 10)
	b = append(b, `,"payload":`...)
	b = append(b, payload...)
	b = append(b, `,"metadata":`...)
	b = appendMetadata(b, &meta)
	return append(b, '}'), nil
}

// appendMetadata writes m as json.Marshal would: fields in declaration
// order, empty ones omitted (every field is omitempty).
func appendMetadata(b []byte, m *Metadata) []byte {
	b = append(b, '{')
	first := true
	for _, f := range [...]struct{ key, val string }{
		{`"correlation_id":`, m.CorrelationID},
		{`"causation_id":`, m.CausationID},
		{`"idempotency_key":`, m.IdempotencyKey},
		{`"request_id":`, m.RequestID},
		{`"principal":`, m.Principal},
	} {
		if f.val == "" {
			continue
		}
		if !first {
			b = append(b, ',')
		}
		first = false
		b = append(b, f.key...)
		b = appendString(b, f.val)
	}
	return append(b, '}')
}

// appendString appends s as a JSON string; plain printable ASCII is copied,
// anything else goes through encoding/json.
func appendString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s)
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}
