package projector

import (
	"context"
	"fmt"
	"sort"
	"time"
)

// bound gives up on version gaps that last too long or hold too much: an
// aggregate parked for ParkTimeout, or the oldest parked aggregates while
// MaxParked or more events are parked, are quarantined at the missing
// version and their parked events held in the DLQ, so no gap pins its
// partition's commit, or fills the memory, for ever.
func (p *processor) bound(plans []*keyPlan) {
	now := p.now()
	type waiting struct {
		kp    *keyPlan
		since time.Time
	}
	var ws []waiting
	total := 0
	for _, kp := range plans {
		if len(kp.parked) == 0 {
			continue
		}
		since := p.parts.parkedSince(kp.tp, kp.id)
		if since.IsZero() {
			since = now
		}
		if now.Sub(since) >= p.parkTimeout {
			p.giveUp(kp, fmt.Sprintf("version %d did not arrive within PARK_TIMEOUT (%s)", kp.final.version+1, p.parkTimeout))
			continue
		}
		ws = append(ws, waiting{kp, since})
		total += len(kp.parked)
	}
	if total < p.maxParked {
		return
	}
	sort.SliceStable(ws, func(i, j int) bool { return ws[i].since.Before(ws[j].since) })
	for _, w := range ws {
		if total < p.maxParked {
			break
		}
		total -= len(w.kp.parked)
		p.giveUp(w.kp, fmt.Sprintf("version %d missing while MAX_PARKED_EVENTS (%d) events were parked", w.kp.final.version+1, p.maxParked))
	}
}

// giveUp turns kp's parked events into held ones behind its missing
// version.
func (p *processor) giveUp(kp *keyPlan, detail string) {
	kp.gapAt, kp.gapHeld, kp.parked = kp.final.version+1, kp.parked, nil
	kp.gapDetail = detail
}

// settle sends the batch's dead letters, then records the newly blocked
// aggregates in the quarantine topic. Both happen before the batch's
// offsets can be committed, so a crash in between re-reads the records
// and does it again; dead letters first, so an entry's DLQ coordinates
// point at a record that exists.
func (p *processor) settle(ctx context.Context, plans []*keyPlan) error {
	var letters []*DeadLetter
	for _, kp := range plans {
		kp.letters = p.lettersOf(kp)
		letters = append(letters, kp.letters...)
	}
	if err := p.dlq.Send(ctx, letters); err != nil {
		return fmt.Errorf("sending dead letters: %w", err)
	}
	var entries []QuarantineEntry
	for _, kp := range plans {
		if kp.entry = p.entryOf(kp); kp.entry != nil {
			entries = append(entries, *kp.entry)
		}
	}
	if err := p.quar.Put(ctx, entries); err != nil {
		return fmt.Errorf("recording quarantined aggregates: %w", err)
	}
	return nil
}

// lettersOf builds kp's dead letters: its poison events, then the events
// held behind its block, its given-up gap and its earlier quarantine.
func (p *processor) lettersOf(kp *keyPlan) []*DeadLetter {
	var out []*DeadLetter
	for _, pp := range kp.poison {
		out = append(out, &DeadLetter{Rec: pp.rec, Code: pp.code, Reason: pp.reason, AggregateID: kp.id, Version: pp.version})
	}
	hold := func(evs []pending, code string, b *Blocker) {
		reason := fmt.Sprintf("held: version %d of aggregate %s is blocked", b.Version, kp.id)
		for _, e := range evs {
			out = append(out, &DeadLetter{Rec: e.rec, Code: code, Reason: reason, AggregateID: kp.id, Version: e.env.Version, Blocked: b})
		}
	}
	if len(kp.held) > 0 {
		b := &Blocker{Version: kp.blockedAt, Offset: -1}
		if r := kp.blocker; r != nil {
			b.Topic, b.Partition, b.Offset = r.Topic, r.Partition, r.Offset
		}
		hold(kp.held, ReasonQuarantinedAfter, b)
	}
	if len(kp.gapHeld) > 0 {
		hold(kp.gapHeld, ReasonVersionGap, &Blocker{Version: kp.gapAt, Topic: kp.tp.topic, Partition: kp.tp.partition, Offset: -1})
	}
	if len(kp.preHeld) > 0 {
		hold(kp.preHeld, ReasonQuarantinedAfter, kp.quarantined.blocker())
	}
	return out
}

// entryOf is the quarantine entry kp needs written: its new block (the
// lower of a poison event's and a given-up gap's version), unless the
// aggregate is already quarantined at that version or below.
func (p *processor) entryOf(kp *keyPlan) *QuarantineEntry {
	var e *QuarantineEntry
	switch {
	case kp.gapAt > 0 && (kp.blockedAt == 0 || kp.gapAt < kp.blockedAt):
		e = &QuarantineEntry{BlockedVersion: kp.gapAt, Reason: ReasonVersionGap, Detail: kp.gapDetail,
			Topic: kp.tp.topic, Partition: kp.tp.partition, Offset: -1, DLQPartition: -1, DLQOffset: -1}
	case kp.blockedAt > 0:
		e = &QuarantineEntry{BlockedVersion: kp.blockedAt, Topic: kp.tp.topic, Partition: kp.tp.partition, Offset: -1,
			DLQPartition: -1, DLQOffset: -1}
		for _, l := range kp.letters {
			if l.Rec == kp.blocker && kp.blocker != nil {
				e.Reason, e.Detail = l.Code, l.Reason
				e.Topic, e.Partition, e.Offset = l.Rec.Topic, l.Rec.Partition, l.Rec.Offset
				e.DLQPartition, e.DLQOffset = l.DLQPartition, l.DLQOffset
				break
			}
		}
	default:
		return nil
	}
	if q := kp.quarantined; q != nil && q.BlockedVersion <= e.BlockedVersion {
		return nil
	}
	if len(e.Detail) > maxReasonBytes {
		e.Detail = e.Detail[:maxReasonBytes]
	}
	e.Projection, e.AggregateID, e.Since = p.proj.Name(), kp.id, p.now().UTC()
	return e
}

// countLetters counts and logs dead letters; held events are logged per
// aggregate by logQuarantine.
func (p *processor) countLetters(letters []*DeadLetter) {
	name := p.proj.Name()
	for _, l := range letters {
		p.m.Events.WithLabelValues(name, OutcomeDLQ).Inc()
		p.m.DeadLetters.WithLabelValues(name, l.Code).Inc()
		if held(l.Code) {
			p.m.HeldEvents.WithLabelValues(name).Inc()
			continue
		}
		p.log.Warn("event sent to the DLQ", "reason_code", l.Code, "reason", truncate(l.Reason, 300),
			"aggregate_id", truncate(l.AggregateID, 100), "version", l.Version,
			"topic", l.Rec.Topic, "partition", l.Rec.Partition, "offset", l.Rec.Offset)
	}
}

func (p *processor) logQuarantine(kp *keyPlan) {
	if e := kp.entry; e != nil {
		p.log.Warn("aggregate quarantined: its later events are held in the DLQ until `projector dlq redrive` or `dlq skip`",
			"aggregate_id", kp.id, "blocked_version", e.BlockedVersion, "reason_code", e.Reason)
	}
	if n := len(kp.held) + len(kp.gapHeld) + len(kp.preHeld); n > 0 {
		p.log.Info("events held behind a quarantined aggregate", "aggregate_id", kp.id, "held", n)
	}
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
