package relay

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// batchResult is what became of a claimed batch's rows.
type batchResult struct {
	ids      []int64      // acked rows that may leave the outbox
	dead     []deadLetter // rows to move to outbox_dead_letters
	retryNow bool         // rows were left that can be sent again at once
	err      error        // a transient failure: the worker backs off
}

// deadLetter is a row to move to outbox_dead_letters with its failure.
type deadLetter struct {
	row         *row
	reason, err string
	attempts    int
	first, last time.Time
}

// publishBatch publishes a claimed batch and decides, row by row, what
// leaves the outbox:
//   - rows of suspect aggregates are not sent with the batch; the
//     suspect row is sent alone once PoisonInterval has passed since its
//     last attempt (confirm), its aggregate's later rows wait;
//   - the first failed row of each aggregate whose error is a permanent
//     one (classify) is sent alone at once: acked, it is published after
//     all (it was refused with a neighbour in its produce batch); refused
//     again, it becomes a suspect with one more confirmed attempt;
//   - a suspect with PoisonAttempts confirmed attempts is dead-lettered,
//     its aggregate's later rows stay in the outbox (held, see store.claim);
//   - a transient failure leaves the rows for the next batch and makes
//     the worker back off.
func (r *Relay) publishBatch(ctx context.Context, w int, p *poison, rows []row, now time.Time) batchResult {
	errs := make([]error, len(rows))
	waiting := holdSuspects(p, rows, errs)
	start := time.Now()
	recs, ackedAt := publish(ctx, r.prods[w], r.topicOf, rows, errs)
	r.tracePublish(recs, errs, start)
	r.countPublished(rows, recs, errs, ackedAt)
	cands, transients := r.candidates(p, rows, errs, now)
	confs := r.confirm(ctx, rows, cands)
	return r.settle(p, rows, errs, cands, confs, transients, waiting, now)
}

// holdSuspects marks every row of a suspect aggregate errHeld, so the
// batch does not send it, and returns the suspects present.
func holdSuspects(p *poison, rows []row, errs []error) map[int64]bool {
	present := map[int64]bool{}
	if len(p.rows) == 0 {
		return present
	}
	sus := map[aggKey]bool{}
	seen := map[aggKey]bool{}
	for i := range rows {
		k := keyOf(&rows[i])
		if !seen[k] {
			seen[k] = true
			if p.rows[rows[i].ID] != nil {
				sus[k] = true
				present[rows[i].ID] = true
			}
		}
		if sus[k] {
			errs[i] = errHeld
		}
	}
	return present
}

// countPublished counts the batch's acks and failures (rows not sent are
// not counted).
func (r *Relay) countPublished(rows []row, recs []*kgo.Record, errs []error, ackedAt []time.Time) {
	for i := range rows {
		if errors.Is(errs[i], errHeld) {
			continue
		}
		topic := r.topicOf(rows[i].AggregateType)
		if recs[i] != nil {
			topic = recs[i].Topic
		}
		if errs[i] != nil {
			r.m.errors.WithLabelValues(topic).Inc()
			continue
		}
		r.m.published.WithLabelValues(topic).Inc()
		r.m.publishLag.Observe(ackedAt[i].Sub(rows[i].RecordedAt).Seconds())
		if r.cfg.OnAck != nil {
			r.cfg.OnAck(rows[i].RecordedAt, ackedAt[i])
		}
	}
}

// candidates returns, in id order, the rows to confirm: the first failed
// row of each aggregate whose failure is permanent, and the suspects due
// for another attempt. transients are the first failed rows whose
// failure is transient.
func (r *Relay) candidates(p *poison, rows []row, errs []error, now time.Time) (cands []candidate, transients []int) {
	seen := map[aggKey]bool{}
	for i := range rows {
		k := keyOf(&rows[i])
		if errs[i] == nil || seen[k] {
			continue
		}
		seen[k] = true
		if s := p.rows[rows[i].ID]; s != nil && errors.Is(errs[i], errHeld) {
			if now.Sub(s.last) >= r.cfg.PoisonInterval {
				cands = append(cands, candidate{i: i, f: failure{s.scope, s.reason}})
			}
			continue
		}
		if f := classify(errs[i]); f.scope != transient {
			cands = append(cands, candidate{i: i, f: f})
		} else {
			transients = append(transients, i)
		}
	}
	return cands, transients
}

// settle applies the confirmations to the batch: see publishBatch.
// waiting are the suspects present in the batch.
func (r *Relay) settle(p *poison, rows []row, errs []error, cands []candidate, confs []confirmation, transients []int, waiting map[int64]bool, now time.Time) batchResult {
	var res batchResult
	keep := waiting // suspects not due stay suspects
	for k, c := range cands {
		rw := &rows[c.i]
		switch confs[k].verdict {
		case published:
			errs[c.i] = nil
			delete(keep, rw.ID)
			// Later rows of the aggregate that the batch got acked landed
			// before this one: they stay and are sent again after it.
			for j := c.i + 1; j < len(rows); j++ {
				if errs[j] == nil && keyOf(&rows[j]) == keyOf(rw) {
					errs[j] = errHeld
				}
			}
			res.retryNow = true
		case refused:
			f := classify(confs[k].err)
			s := p.confirmed(rw, f, confs[k].err.Error(), now)
			keep[rw.ID] = true
			errs[c.i] = confs[k].err
			if s.attempts >= r.cfg.PoisonAttempts {
				res.dead = append(res.dead, deadLetter{row: rw, reason: s.reason, err: s.msg, attempts: s.attempts, first: s.first, last: s.last})
				continue
			}
			r.log.Warn("Kafka refused an outbox row on its own; its aggregate's later rows wait",
				"outbox_id", rw.ID, "event_id", rw.EventID, "aggregate_type", rw.AggregateType, "aggregate_id", rw.AggregateID,
				"version", rw.Version, "reason", s.reason, "attempt", s.attempts, "dead_letter_after", r.cfg.PoisonAttempts, "err", confs[k].err)
		case failed:
			delete(keep, rw.ID) // not confirmed this time: the count starts over
			errs[c.i] = confs[k].err
			transients = append(transients, c.i)
		default:
			// Skipped: a suspect stays one, uncounted; another row is
			// sent again with the next batch.
			res.retryNow = true
		}
	}
	p.prune(keep)
	res.ids = deletable(rows, errs)
	if len(transients) > 0 {
		slices.Sort(transients)
		i := transients[0]
		res.err = fmt.Errorf("records of %d aggregates not acked, their rows stay in the outbox: publishing event %s (outbox id %d): %w",
			len(transients), rows[i].EventID, rows[i].ID, errs[i])
	}
	return res
}

// reportDead counts and logs the rows finish moved to
// outbox_dead_letters (not those of shards lost before the move) and
// forgets them as suspects of worker w.
func (r *Relay) reportDead(w int, dead []deadLetter, lost []int16) {
	for _, d := range dead {
		delete(r.poison[w].rows, d.row.ID)
		if slices.Contains(lost, d.row.Shard) {
			continue
		}
		r.m.deadLettered.WithLabelValues(d.reason).Inc()
		r.log.Error("outbox row dead-lettered: Kafka refused it on its own on every attempt; its aggregate's later rows are held until `outbox-relay dead retry` or `dead discard`",
			"worker", w, "outbox_id", d.row.ID, "event_id", d.row.EventID, "aggregate_type", d.row.AggregateType,
			"aggregate_id", d.row.AggregateID, "version", d.row.Version, "reason", d.reason, "attempts", d.attempts, "err", d.err)
	}
}
