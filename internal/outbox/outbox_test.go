package outbox

import (
	"slices"
	"strings"
	"testing"
)

func TestNotifyPayloadRoundTripsEveryShard(t *testing.T) {
	all := make([]int, 0, ShardCount)
	for s := range ShardCount {
		got, ok := ParseNotifyPayload(NotifyPayload(s))
		if !ok || !slices.Equal(got, []int{s}) {
			t.Fatalf("shard %d: parsed %v, %v", s, got, ok)
		}
		all = append(all, s)
	}
	for _, shards := range [][]int{{3, 17, 42}, {63, 0}, {5, 5}, all} {
		p := NotifyPayload(shards...)
		got, ok := ParseNotifyPayload(p)
		if !ok || !slices.Equal(got, shards) {
			t.Errorf("%v: payload %q parsed as %v, %v", shards, p, got, ok)
		}
	}
	if p := NotifyPayload(3, 17, 42); p != "3,17,42" {
		t.Errorf("payload %q, want 3,17,42", p)
	}
	if p := NotifyPayload(all...); len(p) > maxNotifyPayload || len(p) >= 8000 {
		t.Errorf("every shard makes a %d-byte payload, over the bound", len(p))
	}
}

func TestParseNotifyPayloadRejectsWhatIsNotAListOfShards(t *testing.T) {
	for _, p := range []string{"", "x", "64", "-1", "1 ", " 1", "1.0", "0x1", "١", "99999999999999999999999", "3;DROP", "\x00",
		",", "1,", ",1", "1,,2", "1, 2", "1,64", "1,-0", "01", "1,+2", "product", strings.Repeat("1,", ShardCount*2) + "1"} {
		if s, ok := ParseNotifyPayload(p); ok {
			t.Errorf("payload %q parsed as shards %v", p, s)
		}
	}
}

func FuzzParseNotifyPayload(f *testing.F) {
	for _, seed := range []string{"7", "3,17,42", "", "1,,2", "64"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, p string) {
		shards, ok := ParseNotifyPayload(p)
		if !ok {
			return
		}
		if len(shards) == 0 {
			t.Fatalf("%q: ok with no shard", p)
		}
		for _, s := range shards {
			if s < 0 || s >= ShardCount {
				t.Fatalf("%q: shard %d out of range", p, s)
			}
		}
		if again := NotifyPayload(shards...); again != p {
			t.Fatalf("%q parsed as %v, which prints as %q", p, shards, again)
		}
	})
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
