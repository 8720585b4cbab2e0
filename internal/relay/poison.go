package relay

import (
	"context"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// aggKey identifies an aggregate.
type aggKey struct{ typ, id string }

func keyOf(r *row) aggKey { return aggKey{r.AggregateType, r.AggregateID} }

// suspect is the first unpublished row of an aggregate whose permanent
// failure was confirmed (see confirm) at least once. Its aggregate's
// later rows are neither claimed nor sent until it is published or
// dead-lettered.
type suspect struct {
	key         aggKey
	shard       int16
	scope       scope
	reason, msg string
	attempts    int
	first, last time.Time
}

// poison is one publish worker's suspects, by outbox id. It lives in
// memory: a restart (or a shard moving to another relay) starts the
// count over, which costs at most PoisonAttempts more attempts. It holds
// only rows of the worker's last batch (prune), so it is bounded by the
// batch size.
type poison struct {
	rows map[int64]*suspect
}

// exclusions are the suspects as the claim skips them: rows of the
// aggregate above the suspect's id.
func (p *poison) exclusions() []exclusion {
	out := make([]exclusion, 0, len(p.rows))
	for id, s := range p.rows {
		out = append(out, exclusion{typ: s.key.typ, id: s.key.id, above: id})
	}
	return out
}

// exclusion makes a claim skip an aggregate's rows with an id above above.
type exclusion struct {
	typ, id string
	above   int64
}

// confirmed counts one more confirmed permanent failure of r.
func (p *poison) confirmed(r *row, f failure, msg string, now time.Time) *suspect {
	s := p.rows[r.ID]
	if s == nil {
		s = &suspect{key: keyOf(r), shard: r.Shard, first: now}
		p.rows[r.ID] = s
	}
	s.scope, s.reason, s.msg = f.scope, f.reason, msg
	s.attempts++
	s.last = now
	return s
}

// prune forgets every suspect not in keep: a row published, failing for
// a transient reason, or not claimed by the last batch (its shard moved)
// starts over, so the count is of consecutive confirmed failures.
func (p *poison) prune(keep map[int64]bool) {
	for id := range p.rows {
		if !keep[id] {
			delete(p.rows, id)
		}
	}
}

// maxProbes bounds the rows sent alone per batch. Kafka's refusal of
// one record fails every record buffered for its partition, so the
// first batch that meets a poison row may have one failed row per
// aggregate of that partition to clear; what is not probed is sent
// again with the next batch.
const maxProbes = 256

// candidate is a row whose failure confirm checks.
type candidate struct {
	i int // index in the batch
	f failure
}

// verdict is what confirm found for a candidate.
type verdict int8

const (
	skipped   verdict = iota // not sent: over maxProbes, or after a transient failure
	failed                   // failed for a transient reason
	published                // sent alone and acked
	refused                  // refused again, for the reason in err
)

type confirmation struct {
	verdict verdict
	err     error // the failure or refusal
}

// confirm sends each candidate row alone, in order, through the probe
// producer, so its record is the only one in its produce request: a row
// that Kafka refuses then is refused for itself, not for a neighbour in
// its batch. A topic-scope refusal is confirmed once per topic and batch
// (every row of the topic fails alike). A transient failure stops the
// probing: Kafka is in trouble, the rest is skipped.
func (r *Relay) confirm(ctx context.Context, rows []row, cands []candidate) []confirmation {
	out := make([]confirmation, len(cands))
	topics := map[string]confirmation{} // topic → its topic-scope verdict
	probes := 0
	for k, c := range cands {
		rw := &rows[c.i]
		topicName := r.topicOf(rw.AggregateType)
		if c.f.scope == ofTopic {
			if v, ok := topics[topicName]; ok {
				out[k] = v // refused with the topic, or skipped
				continue
			}
		}
		if probes == maxProbes {
			break
		}
		probes++
		ackedAt, err := r.probeRow(ctx, rw)
		switch {
		case err == nil:
			out[k] = confirmation{verdict: published}
			r.m.published.WithLabelValues(topicName).Inc()
			r.m.publishLag.Observe(ackedAt.Sub(rw.RecordedAt).Seconds())
			if r.cfg.OnAck != nil {
				r.cfg.OnAck(rw.RecordedAt, ackedAt)
			}
		case classify(err).scope == transient:
			out[k] = confirmation{verdict: failed, err: err}
			r.m.errors.WithLabelValues(topicName).Inc()
			r.log.Warn("sending a failed outbox row alone failed for a transient reason; it is retried", "outbox_id", rw.ID, "err", err)
			return out
		default:
			out[k] = confirmation{verdict: refused, err: err}
			r.m.errors.WithLabelValues(topicName).Inc()
		}
		if c.f.scope == ofTopic {
			// Only a topic-scope refusal speaks for the topic's other
			// rows; after any other answer they are sent again.
			if out[k].verdict == refused && classify(out[k].err).scope == ofTopic {
				topics[topicName] = out[k]
			} else {
				topics[topicName] = confirmation{}
			}
		}
	}
	return out
}

// probeRow sends one row's record alone through the probe producer and
// waits for its acknowledgement. Probes of all workers take turns, so
// the probe producer never holds two records.
func (r *Relay) probeRow(ctx context.Context, rw *row) (time.Time, error) {
	rec, err := record(r.topicOf(rw.AggregateType), rw)
	if err != nil {
		return time.Time{}, envelopeErr(err)
	}
	r.probeMu.Lock()
	defer r.probeMu.Unlock()
	done := make(chan error, 1)
	r.probe.Produce(ctx, rec, func(_ *kgo.Record, err error) { done <- err })
	_ = r.probe.Flush(ctx) // the promise says how it went
	select {
	case err = <-done:
	case <-ctx.Done():
		// A manually flushed record left in the buffer is never sent:
		// the relay is stopping (its batch's grace ran out).
		err = fmt.Errorf("%w: %w", errAbandoned, ctx.Err())
	}
	return time.Now(), err
}
