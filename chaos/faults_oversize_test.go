package main

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"strings"
	"testing"

	"cqrsflow/chaos/nemesis"
)

func TestParseOversize(t *testing.T) {
	for _, tc := range []struct {
		param string
		n     int
		err   string
	}{
		{"bytes=1600000", 1600000, ""},
		{"bytes=1500000", 1500000, ""},
		{"bytes=1000", 0, "must be in"},
		{"bytes=1600000x", 0, "want bytes=N"},
		{"records=3", 0, "want bytes=N"},
		{"", 0, "want bytes=N"},
		{"bytes=999999999", 0, "must be in"},
	} {
		n, err := parseOversize(tc.param)
		if n != tc.n || (err == nil) != (tc.err == "") || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("parseOversize(%q) = %d, %v; want %d, %q", tc.param, n, err, tc.n, tc.err)
		}
	}
}

// The first event's payload is over the broker's limit even compressed,
// the second is small; both are their aggregate type's events of the
// domain (Created, then Updated or Paid), with fresh ids.
func TestOversizeEvents(t *testing.T) {
	for typ, want := range map[string][2]string{"product": {"ProductCreated", "ProductUpdated"}, "order": {"OrderCreated", "OrderPaid"}} {
		evs, err := oversizeEvents(typ, "oversize-r-1", nemesis.OversizeMin)
		if err != nil {
			t.Fatal(err)
		}
		if evs[0].typ != want[0] || evs[1].typ != want[1] || evs[0].id == evs[1].id || evs[0].schemaVersion < 1 {
			t.Errorf("%s: events %s v%d, %s", typ, evs[0].typ, evs[0].schemaVersion, evs[1].typ)
		}
		for _, e := range evs {
			if !json.Valid(e.payload) {
				t.Errorf("%s %s: payload not JSON", typ, e.typ)
			}
		}
		var z bytes.Buffer
		gz := gzip.NewWriter(&z)
		_, _ = gz.Write(evs[0].payload)
		_ = gz.Close()
		if len(evs[0].payload) < nemesis.OversizeMin || z.Len() <= brokerMaxMessageBytes {
			t.Errorf("%s: v1 payload %d bytes, %d gzipped: want over %d either way", typ, len(evs[0].payload), z.Len(), brokerMaxMessageBytes)
		}
		if len(evs[1].payload) > 1024 {
			t.Errorf("%s: v2 payload %d bytes", typ, len(evs[1].payload))
		}
	}
	if _, err := oversizeEvents("invoice", "k", nemesis.OversizeMin); err == nil {
		t.Error("an unknown aggregate type was accepted")
	}
}

func TestClip(t *testing.T) {
	if got := clip([]byte("abc"), 3); got != "abc" {
		t.Errorf("clip = %q", got)
	}
	if got := clip([]byte(strings.Repeat("x", 1000)), 4); got != "xxxx… (1000 bytes)" {
		t.Errorf("clip = %q", got)
	}
}
