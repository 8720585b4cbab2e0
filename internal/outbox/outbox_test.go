package outbox

import (
	"strings"
	"testing"
)

func TestNotifyPayloadRoundTripsEveryShard(t *testing.T) {
	for s := range ShardCount {
		got, ok := ParseNotifyPayload(NotifyPayload(s))
		if !ok || got != s {
			t.Fatalf("shard %d: parsed %d, %v", s, got, ok)
		}
	}
}

func TestParseNotifyPayloadRejectsWhatIsNotAShard(t *testing.T) {
	for _, p := range []string{"", "x", "64", "-1", "1 ", " 1", "1.0", "0x1", "١", "99999999999999999999999", "3;DROP", "\x00"} {
		if s, ok := ParseNotifyPayload(p); ok {
			t.Errorf("payload %q parsed as shard %d", p, s)
		}
	}
}

// ShardSQL masks the hash, which covers every shard exactly once only for
// a power of two.
func TestShardCountIsAPowerOfTwoAndShardSQLMasksWithIt(t *testing.T) {
	if ShardCount <= 0 || ShardCount&(ShardCount-1) != 0 {
		t.Fatalf("ShardCount %d is not a power of two", ShardCount)
	}
	if got, want := ShardSQL("aggregate_id"), "(hashtextextended(aggregate_id, 0) & 63)"; got != want {
		t.Fatalf("ShardSQL = %s, want %s", got, want)
	}
}

func TestColumnsAndFromEventsPairUp(t *testing.T) {
	cols := strings.Split(Columns, ", ")
	vals := strings.Split(FromEvents, ", ")
	if len(cols) != len(vals) {
		t.Fatalf("%d columns, %d values", len(cols), len(vals))
	}
	for i, c := range cols {
		if v := strings.TrimSuffix(vals[i], "::text"); v != "ev."+c {
			t.Errorf("column %s gets %s", c, vals[i])
		}
	}
}
