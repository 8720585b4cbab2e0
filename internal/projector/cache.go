package projector

import "sync"

// defaultCacheMax bounds the document cache (it is cleared when full).
const defaultCacheMax = 200000

// docCache holds the documents this worker wrote or read, by aggregate id,
// so steady-state batches skip the _mget (a realtime get of a recently
// written document costs Elasticsearch a refresh). It is only valid while
// the worker owns the partitions, so it is cleared on every revoke/loss;
// a 409 on write evicts the entry.
type docCache struct {
	mu  sync.Mutex
	m   map[string]docState
	max int
}

func newDocCache(max int) *docCache {
	return &docCache{m: map[string]docState{}, max: max}
}

// lookup puts the cached states of ids into into and returns the ids it
// does not hold.
func (c *docCache) lookup(ids []string, into map[string]docState) (missing []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, id := range ids {
		if st, ok := c.m[id]; ok {
			into[id] = st
		} else {
			missing = append(missing, id)
		}
	}
	return missing
}

// update keeps the documents a handled batch left behind.
func (c *docCache) update(plans []*keyPlan) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m)+len(plans) > c.max {
		clear(c.m)
	}
	for _, kp := range plans {
		if kp.foldless {
			continue
		}
		if kp.evict || kp.final.doc == nil {
			delete(c.m, kp.id)
		} else {
			c.m[kp.id] = kp.final
		}
	}
}

func (c *docCache) clear() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.m)
}

// evict forgets one aggregate's document (its quarantine was released:
// a redrive or a skip wrote it behind the worker's back).
func (c *docCache) evict(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, id)
}
