package projector

import "sync"

// docCache holds the documents this worker wrote or read, by aggregate id,
// so steady-state batches skip the _mget (a realtime get of a recently
// written document costs Elasticsearch a refresh). It is only valid while
// the worker owns the partitions, so it is cleared on every revoke/loss;
// a 409 on write evicts the entry.
//
// It is bounded by entries in two generations: writes go to cur, and when
// cur holds half the bound it becomes old and a new cur starts. A hit in
// old moves the entry to cur, so recently used documents survive a turn
// and the cache never holds more than max entries — unlike clearing a
// full map, which dropped the whole working set at once and let the map
// grow to its bound before (a stream of creates fills it with documents
// that are never read again).
type docCache struct {
	mu       sync.Mutex
	cur, old map[string]docState
	half     int
}

func newDocCache(entries int) *docCache {
	return &docCache{cur: map[string]docState{}, old: map[string]docState{}, half: max(entries/2, 1)}
}

// lookup puts the cached states of ids into into and returns the ids it
// does not hold.
func (c *docCache) lookup(ids []string, into map[string]docState) (missing []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, id := range ids {
		if st, ok := c.cur[id]; ok {
			into[id] = st
		} else if st, ok := c.old[id]; ok {
			into[id] = st
			delete(c.old, id)
			c.put(id, st)
		} else {
			missing = append(missing, id)
		}
	}
	return missing
}

// put stores one entry in cur, turning the generations when cur is full.
// The caller holds mu.
func (c *docCache) put(id string, st docState) {
	if _, ok := c.cur[id]; !ok && len(c.cur) >= c.half {
		c.old = c.cur
		c.cur = make(map[string]docState, c.half)
	}
	c.cur[id] = st
}

// update keeps the documents a handled batch left behind.
func (c *docCache) update(plans []*keyPlan) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, kp := range plans {
		if kp.foldless {
			continue
		}
		delete(c.old, kp.id)
		if kp.evict || kp.final.doc == nil {
			delete(c.cur, kp.id)
		} else {
			c.put(kp.id, kp.final)
		}
	}
}

// len is the number of entries held.
func (c *docCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.cur) + len(c.old)
}

func (c *docCache) clear() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cur = map[string]docState{}
	c.old = map[string]docState{}
}

// evict forgets one aggregate's document (its quarantine was released:
// a redrive or a skip wrote it behind the worker's back).
func (c *docCache) evict(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.cur, id)
	delete(c.old, id)
}
