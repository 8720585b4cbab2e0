package projector

import (
	"fmt"
	"testing"
)

func plansFor(ids ...string) []*keyPlan {
	var out []*keyPlan
	for _, id := range ids {
		kp := &keyPlan{id: id}
		kp.final = docState{doc: id, version: 1}
		out = append(out, kp)
	}
	return out
}

// The cache never holds more than its bound, however many documents
// pass through it, and keeps what was used in the last generation.
func TestDocCacheBoundedAndKeepsRecent(t *testing.T) {
	c := newDocCache(100)
	for i := range 10_000 {
		c.update(plansFor(fmt.Sprint("a", i)))
		if n := c.len(); n > 100 {
			t.Fatalf("after %d documents the cache holds %d, bound 100", i+1, n)
		}
	}
	// The newest 50 are in cur; looking up an entry of old keeps it
	// through the next turn while the rest of old goes.
	got := map[string]docState{}
	if missing := c.lookup([]string{"a9949", "a9999", "a0"}, got); len(missing) != 1 || missing[0] != "a0" {
		t.Fatalf("missing %v, want [a0]", missing)
	}
	var fresh []string
	for i := range 50 {
		fresh = append(fresh, fmt.Sprint("b", i))
	}
	c.update(plansFor(fresh...)) // turns the generations once
	got = map[string]docState{}
	missing := c.lookup([]string{"a9949", "a9950"}, got)
	if _, ok := got["a9949"]; !ok {
		t.Errorf("a9949, used before the turn, was dropped (missing %v)", missing)
	}
	if len(missing) != 1 || missing[0] != "a9950" {
		t.Errorf("missing %v, want [a9950] (unused entries of the old generation go)", missing)
	}
}

func TestDocCacheEvictAndDeletes(t *testing.T) {
	c := newDocCache(4)
	c.update(plansFor("a", "b", "c")) // a, b in old; c in cur
	c.evict("a")
	gone := &keyPlan{id: "b", evict: true}
	deleted := &keyPlan{id: "c"}
	deleted.final = docState{version: 2} // no document
	c.update([]*keyPlan{gone, deleted})
	got := map[string]docState{}
	if missing := c.lookup([]string{"a", "b", "c"}, got); len(missing) != 3 {
		t.Errorf("held %v after evict, 409 evict and delete", got)
	}
	c.update(plansFor("d"))
	c.clear()
	if c.len() != 0 {
		t.Errorf("clear left %d", c.len())
	}
}
