package checker

import (
	"encoding/json"
	"slices"
	"sort"
	"time"
)

// sizeReasons are the dead-letter reasons of a record Kafka (or the
// relay's producer, for the broker) refuses for its size.
var sizeReasons = []string{"MESSAGE_TOO_LARGE", "RECORD_LIST_TOO_LARGE"}

// relayDeadLetters checks the relay side of bad data: an oversize fault
// appended to a fresh aggregate an event whose record is over Kafka's
// limit, then a normal one. The relay must dead-letter the first (after
// its confirmed refusals, for its size), hold the second in the outbox,
// publish neither, and dead-letter nothing else.
func (x *index) relayDeadLetters() Result {
	r := Result{ID: "relay-dead-letters", Desc: "each oversize fault's first event is in outbox_dead_letters, refused for its size, and its later events are held in the outbox; none of them reached Kafka or Elasticsearch; no other event was dead-lettered or is left in the outbox"}
	ids := make([]string, 0, len(x.oversize))
	for id := range x.oversize {
		ids = append(ids, id)
	}
	sort.Strings(ids)

	dead := map[string][]DeadLetter{} // aggregate id → its dead letters
	for _, d := range x.in.DeadLetters {
		dead[d.AggregateID] = append(dead[d.AggregateID], d)
	}
	outbox := map[string]OutboxRow{} // event id → its row
	for _, o := range x.in.Outbox {
		outbox[o.EventID] = o
	}
	// None of their records reached Kafka (a record under another key
	// is kafka-faithful's).
	for _, rec := range x.in.Records {
		if x.oversize[rec.Key] == nil {
			continue
		}
		var env envelope
		_ = json.Unmarshal(rec.Value, &env)
		r.fail(rec.Key, time.Time{}, "%s:%d@%d: v%d (event %s) of the oversize aggregate is in Kafka", rec.Topic, rec.Partition, rec.Offset, env.Version, env.EventID)
	}
	docs := map[string]bool{}
	for _, ds := range x.in.Docs {
		for _, d := range ds {
			docs[d.ID] = true
		}
	}

	for _, id := range ids {
		f := x.oversize[id]
		evs := x.byAgg[id]
		r.Checked++
		// What the nemesis verified it committed is in the store.
		for _, a := range f.Appended {
			if a.AggregateID != id {
				continue
			}
			if e := x.event(id, a.Version); e == nil || e.EventID != a.EventID {
				r.fail(id, f.Start, "fault #%d committed v%d (event %s), which the store does not have", f.Seq, a.Version, a.EventID)
			}
		}
		if len(evs) == 0 {
			// Nothing committed (the injection failed: faults-verified
			// reports it).
			continue
		}
		first := &evs[0]
		if len(evs) < 2 {
			r.fail(id, first.RecordedAt, "the store has %d event(s) of the oversize aggregate, the fault appends 2", len(evs))
		}
		// v1: dead-lettered for its size, with its outbox id.
		var dl *DeadLetter
		for i, d := range dead[id] {
			if d.EventID == first.EventID {
				dl = &dead[id][i]
			}
		}
		switch {
		case dl == nil:
			where := "nowhere"
			if o, ok := outbox[first.EventID]; ok {
				where = sprintf("still in the outbox (id %d)", o.ID)
			}
			r.fail(id, first.RecordedAt, "v1 (event %s) is not in outbox_dead_letters: %s", first.EventID, where)
		default:
			if !slices.Contains(sizeReasons, dl.Reason) {
				r.fail(id, first.RecordedAt, "v1 was dead-lettered for %q (%s), want a size refusal %v", dl.Reason, dl.Error, sizeReasons)
			}
			if dl.Version != 1 || dl.AggregateType != first.AggregateType {
				r.fail(id, first.RecordedAt, "dead letter %d names %s v%d, the event is %s v1", dl.ID, dl.AggregateType, dl.Version, first.AggregateType)
			}
			if x.in.PoisonAttempts > 0 && dl.Attempts < x.in.PoisonAttempts {
				r.fail(id, first.RecordedAt, "v1 was dead-lettered after %d attempt(s), POISON_ATTEMPTS is %d", dl.Attempts, x.in.PoisonAttempts)
			}
			for _, a := range f.Appended {
				if a.EventID == first.EventID && a.OutboxID != 0 && a.OutboxID != dl.ID {
					r.fail(id, first.RecordedAt, "v1's dead letter has id %d, its outbox row had id %d", dl.ID, a.OutboxID)
				}
			}
			if _, ok := outbox[first.EventID]; ok {
				r.fail(id, first.RecordedAt, "v1 is both dead-lettered and in the outbox")
			}
		}
		// v2..: held in the outbox behind it.
		for _, e := range evs[1:] {
			o, ok := outbox[e.EventID]
			switch {
			case !ok:
				r.fail(id, e.RecordedAt, "v%d (event %s) is not held in the outbox", e.Version, e.EventID)
			case dl != nil && o.ID < dl.ID:
				r.fail(id, e.RecordedAt, "v%d's outbox row %d is below its dead letter %d (not held behind it)", e.Version, o.ID, dl.ID)
			}
		}
		if docs[id] {
			r.fail(id, first.RecordedAt, "the oversize aggregate has an Elasticsearch document, though none of its events was published")
		}
	}
	// Nothing else was dead-lettered, nothing else is left.
	for _, d := range x.in.DeadLetters {
		r.Checked++
		if x.oversize[d.AggregateID] == nil {
			r.fail(d.AggregateID, time.Time{}, "v%d (event %s, outbox id %d) was dead-lettered for %q (%s): not an oversize fault's event", d.Version, d.EventID, d.ID, d.Reason, d.Error)
		} else if d.Version != 1 {
			r.fail(d.AggregateID, time.Time{}, "v%d (outbox id %d) was dead-lettered for %q: only v1 of an oversize aggregate is too large", d.Version, d.ID, d.Reason)
		}
	}
	for _, o := range x.in.Outbox {
		if x.oversize[o.AggregateID] == nil {
			r.fail(o.AggregateID, time.Time{}, "v%d (outbox id %d) is left in the outbox: not a held row of an oversize aggregate", o.Version, o.ID)
		}
	}
	return r
}
