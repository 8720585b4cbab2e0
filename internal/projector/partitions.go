package projector

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
)

// tp is a topic partition.
type tp struct {
	topic     string
	partition int32
}

// partState is what the worker knows about one assigned partition.
type partState struct {
	// next is the offset after the last record handled (applied, no-op,
	// DLQ'd or parked); Offset -1 until a record was handled.
	next kgo.EpochOffset
	// parked holds, per aggregate id, the events waiting behind a version
	// gap, sorted by version, and since when the aggregate waits.
	parked      map[string][]pending
	parkedSince map[string]time.Time
	// committed is the last offset committed for the partition (-1: none).
	committed int64
}

// committable is the offset the group may commit for the partition: the
// offset of the oldest parked record if any (so a restart or a new owner
// re-reads it), else the offset after the last handled record. Parking is
// bounded in time (ParkTimeout) and count (MaxParked), so this pin is too.
func (s *partState) committable() (kgo.EpochOffset, bool) {
	best := s.next
	for _, evs := range s.parked {
		for _, e := range evs {
			if best.Offset < 0 || e.rec.Offset < best.Offset {
				best = kgo.EpochOffset{Epoch: e.rec.LeaderEpoch, Offset: e.rec.Offset}
			}
		}
	}
	return best, best.Offset >= 0
}

// partitions is the per-partition state shared by the processor (which
// settles handled batches into it) and the consumer (which commits from it
// and drops partitions it no longer owns): handled offsets, parked events
// and committed offsets. Parking pins a partition's commit to its oldest
// parked record (until the gap closes or is given up); this is the only
// place that knows.
type partitions struct {
	mu      sync.Mutex
	m       map[tp]*partState
	parkedN int              // events in m[*].parked
	gauge   prometheus.Gauge // cqrsflow_projector_parked_events of the projection
}

func newPartitions(parkedGauge prometheus.Gauge) *partitions {
	return &partitions{m: map[tp]*partState{}, gauge: parkedGauge}
}

// part returns the state of t, creating it; ps.mu must be held.
func (ps *partitions) part(t tp) *partState {
	s := ps.m[t]
	if s == nil {
		s = &partState{next: kgo.EpochOffset{Epoch: -1, Offset: -1}, parked: map[string][]pending{},
			parkedSince: map[string]time.Time{}, committed: -1}
		ps.m[t] = s
	}
	return s
}

// parkedEvents is the number of events parked behind version gaps.
func (ps *partitions) parkedEvents() int {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return ps.parkedN
}

// parkedKeys returns the aggregates with parked events and their
// partitions (nil when none).
func (ps *partitions) parkedKeys() map[string]tp {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.parkedN == 0 {
		return nil
	}
	out := map[string]tp{}
	for t, s := range ps.m {
		for id := range s.parked {
			out[id] = t
		}
	}
	return out
}

// parkedFor returns the parked events of those of ids that have any.
func (ps *partitions) parkedFor(ids []string, idTP map[string]tp) map[string][]pending {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.parkedN == 0 {
		return nil
	}
	out := map[string][]pending{}
	for _, id := range ids {
		if s := ps.m[idTP[id]]; s != nil && len(s.parked[id]) > 0 {
			out[id] = s.parked[id]
		}
	}
	return out
}

// parkedSince is when aggregate id of partition t was parked (zero if it
// is not).
func (ps *partitions) parkedSince(t tp, id string) time.Time {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if s := ps.m[t]; s != nil {
		return s.parkedSince[id]
	}
	return time.Time{}
}

// has reports whether the worker handled records of t since it was
// assigned.
func (ps *partitions) has(t tp) bool {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return ps.m[t] != nil
}

// settle records a handled batch: each aggregate's events still waiting
// behind a gap replace its parked set (an aggregate parked for the first
// time waits from now), and every partition's handled offset moves past
// the batch's records. It returns the events parked for the first time
// and the aggregates whose gap closed (or was given up).
func (ps *partitions) settle(recs []*kgo.Record, plans []*keyPlan, now time.Time) (newlyParked []pending, unparked []string) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	for _, kp := range plans {
		s := ps.part(kp.tp)
		was := map[int64]bool{}
		for _, e := range s.parked[kp.id] {
			was[e.rec.Offset] = true
		}
		for _, e := range kp.parked {
			if !was[e.rec.Offset] {
				newlyParked = append(newlyParked, e)
			}
		}
		if len(kp.parked) > 0 {
			if len(s.parked[kp.id]) == 0 {
				s.parkedSince[kp.id] = now
			}
			s.parked[kp.id] = kp.parked
		} else {
			if len(s.parked[kp.id]) > 0 && len(kp.gapHeld) == 0 && len(kp.preHeld) == 0 {
				unparked = append(unparked, kp.id)
			}
			delete(s.parked, kp.id)
			delete(s.parkedSince, kp.id)
		}
	}
	for _, rec := range recs {
		s := ps.part(tp{rec.Topic, rec.Partition})
		if rec.Offset >= s.next.Offset {
			s.next = kgo.EpochOffset{Epoch: rec.LeaderEpoch, Offset: rec.Offset + 1}
		}
	}
	ps.countParked()
	return newlyParked, unparked
}

// countParked updates parkedN and the gauge; ps.mu must be held.
func (ps *partitions) countParked() {
	n := 0
	for _, s := range ps.m {
		for _, evs := range s.parked {
			n += len(evs)
		}
	}
	ps.parkedN = n
	ps.gauge.Set(float64(n))
}

// toCommit returns the committable offsets that moved since the last
// commit, for the given partitions (all when nil).
func (ps *partitions) toCommit(only map[string][]int32) map[string]map[int32]kgo.EpochOffset {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	out := map[string]map[int32]kgo.EpochOffset{}
	want := func(t tp) bool {
		if only == nil {
			return true
		}
		for _, part := range only[t.topic] {
			if part == t.partition {
				return true
			}
		}
		return false
	}
	for t, s := range ps.m {
		if !want(t) {
			continue
		}
		off, ok := s.committable()
		if !ok || off.Offset == s.committed {
			continue
		}
		if out[t.topic] == nil {
			out[t.topic] = map[int32]kgo.EpochOffset{}
		}
		out[t.topic][t.partition] = off
	}
	return out
}

// committed records offsets Kafka acknowledged.
func (ps *partitions) committed(offs map[string]map[int32]kgo.EpochOffset) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	for topic, parts := range offs {
		for part, off := range parts {
			if s := ps.m[tp{topic, part}]; s != nil {
				s.committed = off.Offset
			}
		}
	}
}

// drop forgets partitions (revoked after their commit, or lost); their
// parked events will be re-read by the next owner.
func (ps *partitions) drop(parts map[string][]int32) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	for topic, list := range parts {
		for _, part := range list {
			delete(ps.m, tp{topic, part})
		}
	}
	ps.countParked()
}

// oldestParked is the recorded_at (unix nanos) of the oldest parked event,
// 0 if none.
func (ps *partitions) oldestParked() int64 {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	oldest := int64(0)
	for _, s := range ps.m {
		for _, evs := range s.parked {
			for _, e := range evs {
				if n := e.env.RecordedAt.UnixNano(); oldest == 0 || n < oldest {
					oldest = n
				}
			}
		}
	}
	return oldest
}
