package envelope_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"cqrsflow/internal/envelope"
)

func mkRow(pos int64, agg string, version int64) envelope.Row {
	return envelope.Row{
		AggregateType: "order", AggregateID: agg, GlobalPosition: pos,
		EventID: fmt.Sprintf("00000000-0000-0000-0000-%012d", pos), EventType: "OrderCreated", SchemaVersion: 1,
		Version: version, Payload: []byte(`{"quantity":1}`), Metadata: []byte(`{"correlation_id":"c1"}`),
		OccurredAt: time.Unix(1700000000, 0), RecordedAt: time.Unix(1700000001, 0),
	}
}

// marshalEnvelope is the reference: encoding/json of envelope.Envelope.
func marshalEnvelope(t testing.TB, r *envelope.Row) []byte {
	t.Helper()
	env := envelope.Envelope{EventID: r.EventID, EventType: r.EventType, SchemaVersion: r.SchemaVersion,
		AggregateType: r.AggregateType, AggregateID: r.AggregateID, Version: r.Version,
		OccurredAt: r.OccurredAt.UTC(), RecordedAt: r.RecordedAt.UTC(), GlobalPosition: r.GlobalPosition,
		Payload: r.Payload}
	if err := json.Unmarshal(r.Metadata, &env.Metadata); err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(&env)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestAppendJSONMatchesEncodingJSON(t *testing.T) {
	cases := []envelope.Row{mkRow(1, "agg-1", 1), mkRow(2, `we"ird\id<&>`, 7), mkRow(3, "ünïcødé\u2028\x01", 2)}
	cases[1].EventType = "Tab\tType"
	cases[2].Metadata = []byte(`{"correlation_id":"c","causation_id":"d","idempotency_key":"k","request_id":"r","principal":"p","extra":"dropped"}`)
	cases[2].OccurredAt = time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.FixedZone("X", 3600))
	for _, r := range cases {
		got, err := envelope.AppendJSON(nil, &r)
		if err != nil {
			t.Fatal(err)
		}
		if want := marshalEnvelope(t, &r); !bytes.Equal(got, want) {
			t.Errorf("AppendJSON:\n got %s\nwant %s", got, want)
		}
	}
	// PostgreSQL's jsonb text has spaces; it stays valid and equal in meaning.
	r := mkRow(4, "a", 1)
	r.Payload = []byte(`{"n": 1, "s": "x y"}`)
	got, err := envelope.AppendJSON(nil, &r)
	if err != nil {
		t.Fatal(err)
	}
	env, err := envelope.Decode(got)
	if err != nil {
		t.Fatal(err)
	}
	var p map[string]any
	if err := json.Unmarshal(env.Payload, &p); err != nil || p["s"] != "x y" {
		t.Fatalf("payload %s: %v", env.Payload, err)
	}
	for _, bad := range []string{`[1]`, `{"price": 1.5,`, `{"a":}`, `{"a":1}}`, `{"a":"\x"}`, `{} {}`, ``} {
		r.Payload = []byte(bad)
		if _, err := envelope.AppendJSON(nil, &r); err == nil {
			t.Errorf("payload %q: want error", bad)
		}
	}
	r = mkRow(5, "a", 1)
	r.Metadata = []byte(`[1]`)
	if _, err := envelope.AppendJSON(nil, &r); err == nil {
		t.Error("metadata that is not an object: want error")
	}
}

func FuzzAppendJSON(f *testing.F) {
	f.Add("agg-1", "OrderCreated", "order", int64(3), int64(1700000000123), "corr", "", "req-1")
	f.Add(`"\`, "\x00\u2028", "ü", int64(1), int64(-5), "<&>", "\u2029", "")
	f.Fuzz(func(t *testing.T, id, typ, aggType string, version, nanos int64, corr, cause, req string) {
		for _, s := range []string{id, typ, aggType, corr, cause, req} {
			if !utf8.ValidString(s) {
				t.Skip() // PostgreSQL text is valid UTF-8
			}
		}
		r := mkRow(1, id, version)
		r.EventType, r.AggregateType = typ, aggType
		// Metadata as PostgreSQL stores it (jsonb output, plus a key
		// that is not part of envelope.Metadata and must not travel).
		md := map[string]string{"unknown_key": "x"}
		for k, v := range map[string]string{"correlation_id": corr, "causation_id": cause, "request_id": req} {
			if v != "" {
				md[k] = v
			}
		}
		r.Metadata, _ = json.Marshal(md)
		r.OccurredAt = time.Unix(0, nanos)
		got, err := envelope.AppendJSON(nil, &r)
		if err != nil {
			t.Fatal(err)
		}
		if want := marshalEnvelope(t, &r); !bytes.Equal(got, want) {
			t.Fatalf("got %s\nwant %s", got, want)
		}
	})
}

func benchRow() envelope.Row {
	r := mkRow(1, "0b2f5a7e-3c1d-4e8f-9a6b-1c2d3e4f5a6b", 3)
	r.Payload = []byte(`{"name": "p-1", "description": "` + strings.Repeat("x", 230) + `", "price": 19.99, "stock": 5}`)
	return r
}

func BenchmarkAppendJSON(b *testing.B) {
	r := benchRow()
	buf := make([]byte, 0, 1024)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := envelope.AppendJSON(buf[:0], &r); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAppendJSONEncodingJSON(b *testing.B) {
	r := benchRow()
	b.ReportAllocs()
	for b.Loop() {
		marshalEnvelope(b, &r)
	}
}
