package relay

import (
	"slices"
	"strconv"
	"testing"

	"cqrsflow/internal/outbox"
)

func TestWakeForTargetsTheShardsWorker(t *testing.T) {
	r := &Relay{cfg: Config{Workers: 4}}
	for range 4 {
		r.wake = append(r.wake, make(chan struct{}, 1))
	}
	woken := func() []int {
		var out []int
		for i, c := range r.wake {
			select {
			case <-c:
				out = append(out, i)
			default:
			}
		}
		return out
	}
	r.wakeFor("13")
	if got := woken(); !slices.Equal(got, []int{1}) {
		t.Fatalf("shard 13: woke %v, want [1]", got)
	}
	r.wakeFor(outbox.NotifyPayload(13, 2, 6)) // one notification, several shards
	if got := woken(); !slices.Equal(got, []int{1, 2}) {
		t.Fatalf("shards 13, 2, 6: woke %v, want [1 2]", got)
	}
	for _, p := range []string{"", "x", strconv.Itoa(outbox.ShardCount), "-1", "1,x", "1,", "2,64"} {
		r.wakeFor(p)
		if got := woken(); len(got) != 4 {
			t.Fatalf("payload %q: woke %v, want all", p, got)
		}
	}
}
