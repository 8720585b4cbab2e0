package envelope

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

const good = `{"event_id":"0b5c1f3e-8a4e-4b51-9d3a-7f0e0e2f5a11","event_type":"ProductCreated","schema_version":1,
"aggregate_type":"product","aggregate_id":"p-1","version":3,"occurred_at":"2026-11-24T04:00:00.123456Z",
"recorded_at":"2026-11-24T04:00:00.2Z","global_position":42,"payload":{"name":"x","price":1.5},
"metadata":{"correlation_id":"c","idempotency_key":"k"}}`

func TestDecodeRoundTrip(t *testing.T) {
	e, err := Decode([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	want := time.Date(2026, 11, 24, 4, 0, 0, 123456000, time.UTC)
	if e.Version != 3 || e.GlobalPosition != 42 || e.AggregateID != "p-1" || !e.OccurredAt.Equal(want) ||
		e.Metadata.IdempotencyKey != "k" || string(e.Payload) != `{"name":"x","price":1.5}` {
		t.Fatalf("decoded %+v", e)
	}
	// What Decode reads, encoding/json writes back to the same envelope.
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	e2, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if e2.EventID != e.EventID || !e2.RecordedAt.Equal(e.RecordedAt) || string(e2.Payload) != string(e.Payload) {
		t.Fatalf("round trip: %+v vs %+v", e2, e)
	}
}

func TestDecodeRejects(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"not json", `{"event_id":`, "decoding json"},
		{"wrong type", strings.Replace(good, `"version":3`, `"version":"3"`, 1), "decoding json"},
		{"bad time", strings.Replace(good, `"2026-11-24T04:00:00.2Z"`, `"yesterday"`, 1), "decoding json"},
		{"missing id", strings.Replace(good, `"aggregate_id":"p-1",`, ``, 1), "aggregate_id is empty"},
		{"version 0", strings.Replace(good, `"version":3`, `"version":0`, 1), "version must be >= 1"},
		{"payload array", strings.Replace(good, `{"name":"x","price":1.5}`, `[1]`, 1), "payload must be a JSON object"},
		{"no payload", strings.Replace(good, `"payload":{"name":"x","price":1.5},`, ``, 1), "payload must be a JSON object"},
		// goccy/go-json alone accepts these; they are not JSON.
		{"trailing comma in payload", strings.Replace(good, `"price":1.5}`, `"price":1.5,}`, 1), "not valid JSON"},
		{"trailing comma", strings.Replace(good, `"idempotency_key":"k"}`, `"idempotency_key":"k",}`, 1), "not valid JSON"},
		{"trailing garbage", good + `x`, "not valid JSON"},
		{"id too long", strings.Replace(good, `"p-1"`, `"`+strings.Repeat("a", MaxAggregateIDBytes+1)+`"`, 1), "longer than 512 bytes"},
		{"event id too long", strings.Replace(good, `"0b5c1f3e-8a4e-4b51-9d3a-7f0e0e2f5a11"`, `"`+strings.Repeat("e", MaxEventIDBytes+1)+`"`, 1), "event_id longer than"},
		{"empty event id", strings.Replace(good, `"0b5c1f3e-8a4e-4b51-9d3a-7f0e0e2f5a11"`, `""`, 1), "event_id is empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Decode([]byte(tc.in))
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want ErrInvalid containing %q", err, tc.want)
			}
		})
	}
}

// An aggregate id of exactly the limit is fine; one byte more is
// ErrIDTooLong, which is also ErrInvalid.
func TestDecodeIDLimit(t *testing.T) {
	at := strings.Replace(good, `"p-1"`, `"`+strings.Repeat("a", MaxAggregateIDBytes)+`"`, 1)
	if _, err := Decode([]byte(at)); err != nil {
		t.Fatalf("id of %d bytes: %v", MaxAggregateIDBytes, err)
	}
	over := strings.Replace(good, `"p-1"`, `"`+strings.Repeat("a", 600)+`"`, 1)
	_, err := Decode([]byte(over))
	if !errors.Is(err, ErrIDTooLong) || !errors.Is(err, ErrInvalid) {
		t.Fatalf("600-byte id: err = %v, want ErrIDTooLong and ErrInvalid", err)
	}
}

// Identify recovers the aggregate of a record Decode rejects when it can,
// and refuses when it cannot tell.
func TestIdentify(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		ok       bool
		want     Identity
	}{
		{"valid", good, true, Identity{"product", "p-1", 3}},
		{"trailing comma", strings.Replace(good, `"price":1.5}`, `"price":1.5,}`, 1), true, Identity{"product", "p-1", 3}},
		{"trailing comma at the top", strings.Replace(good, `"idempotency_key":"k"}`, `"idempotency_key":"k"},`, 1) + "}", true, Identity{"product", "p-1", 3}},
		{"truncated", good[:strings.Index(good, `"occurred_at"`)], true, Identity{"product", "p-1", 3}},
		{"bad payload type", strings.Replace(good, `{"name":"x","price":1.5}`, `"text"`, 1), true, Identity{"product", "p-1", 3}},
		{"no version", strings.Replace(good, `"version":3,`, ``, 1), false, Identity{}},
		{"version 0", strings.Replace(good, `"version":3`, `"version":0`, 1), false, Identity{}},
		{"version as string", strings.Replace(good, `"version":3`, `"version":"3"`, 1), false, Identity{}},
		{"id too long", strings.Replace(good, `"p-1"`, `"`+strings.Repeat("a", 600)+`"`, 1), false, Identity{}},
		{"not json", `{"event_id":`, false, Identity{}},
		{"array", `[1,2]`, false, Identity{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := Identify([]byte(tc.in))
			if ok != tc.ok || got != tc.want {
				t.Fatalf("Identify = %+v, %v; want %+v, %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte(good))
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"payload":{"a":[1,{"b":null}]},"version":1e3}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := Decode(b)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error not wrapping ErrInvalid: %v", err)
			}
			return
		}
		if e.Validate() != nil || !json.Valid(e.Payload) || !json.Valid(b) {
			t.Fatalf("accepted an invalid envelope: %+v", e)
		}
		if len(e.AggregateID) > MaxAggregateIDBytes || len(e.EventID) > MaxEventIDBytes {
			t.Fatalf("accepted an id over the limits: %d / %d bytes", len(e.AggregateID), len(e.EventID))
		}
		// What Decode accepts, Identify identifies the same way.
		if id, ok := Identify(b); !ok || id.AggregateID != e.AggregateID || id.Version != e.Version {
			t.Fatalf("Identify(%q) = %+v, %v; Decode gave %s v%d", b, id, ok, e.AggregateID, e.Version)
		}
	})
}

// FuzzIdentify: any bytes, never a panic; what it returns is within the
// limits a consumer relies on.
func FuzzIdentify(f *testing.F) {
	f.Add([]byte(good))
	f.Add([]byte(`{"aggregate_id":"a","version":1,}`))
	f.Add([]byte(`{"aggregate_id":1,"version":"x"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		id, ok := Identify(b)
		if !ok {
			if id != (Identity{}) {
				t.Fatalf("not ok but returned %+v", id)
			}
			return
		}
		if id.AggregateID == "" || len(id.AggregateID) > MaxAggregateIDBytes || id.Version < 1 {
			t.Fatalf("Identify returned %+v", id)
		}
	})
}

// BenchmarkDecode is the projector's per-event decoding cost (a ~300 B
// product payload, as in bench projector).
func BenchmarkDecode(b *testing.B) {
	in := []byte(strings.Replace(good, `{"name":"x","price":1.5}`,
		`{"name":"p-123","description":"`+strings.Repeat("x", 230)+`","price":19.99,"stock":42}`, 1))
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode(in); err != nil {
			b.Fatal(err)
		}
	}
}
