package checker

import (
	"encoding/json"
	"strings"

	"cqrsflow/chaos/history"
)

// eventType is the event a write operation appends.
var eventType = map[string]string{
	history.CreateProduct: "ProductCreated", history.UpdateProduct: "ProductUpdated", history.DeleteProduct: "ProductDeleted",
	history.CreateOrder: "OrderCreated", history.PayOrder: "OrderPaid", history.ShipOrder: "OrderShipped", history.CancelOrder: "OrderCancelled",
}

// contentDiff says how an appended event differs from the request that
// appended it ("" if it does not).
func contentDiff(a *history.Attempt, e *Event) string {
	if want := eventType[a.Type]; e.Type != want {
		return sprintf("event type %s, the request (%s) appends %s", e.Type, a.Type, want)
	}
	if a.ID != "" && e.AggregateID != a.ID {
		return sprintf("appended to %s, the request targets %s", e.AggregateID, a.ID)
	}
	body := a.Body
	if len(body) == 0 {
		body = []byte("{}")
	}
	body = withDefaultCurrency(body, e)
	same, err := sameJSON(body, e.Payload, "expected_version")
	if err != nil {
		return sprintf("cannot compare payload %s with request body %s: %v", e.Payload, body, err)
	}
	if !same {
		return sprintf("payload %s, request body %s", e.Payload, body)
	}
	if a.IdemKey != "" && e.Metadata.IdempotencyKey != a.IdemKey {
		return sprintf("metadata idempotency_key %q, request key %q", e.Metadata.IdempotencyKey, a.IdemKey)
	}
	return ""
}

// defaultCurrency is the currency the api writes for a product request
// without one, and the one v1 prices are in.
const defaultCurrency = "EUR"

// withDefaultCurrency is the request body as the api stores it in a v2
// product event: with the default currency when the request named none.
// A body that does not decode is left for the comparison to report.
func withDefaultCurrency(body []byte, e *Event) []byte {
	if (e.Type != "ProductCreated" && e.Type != "ProductUpdated") || e.SchemaVersion < 2 {
		return body
	}
	var m map[string]json.RawMessage
	if json.Unmarshal(body, &m) != nil || m == nil {
		return body
	}
	if _, ok := m["currency"]; ok {
		return body
	}
	m["currency"] = json.RawMessage(`"` + defaultCurrency + `"`)
	b, err := json.Marshal(m)
	if err != nil {
		return body
	}
	return b
}

func (o *op) requestIDs() map[string]bool {
	ids := map[string]bool{}
	for _, a := range o.attempts {
		ids[a.RequestID] = true
	}
	return ids
}

func (o *op) last() *history.Attempt { return &o.attempts[len(o.attempts)-1] }

func (x *index) lastVersion(id string) int64 {
	evs := x.byAgg[id]
	if len(evs) == 0 {
		return 0
	}
	return evs[len(evs)-1].Version
}

func (x *index) ackDurable() Result {
	r := Result{ID: "ack-durable", Desc: "every acknowledged write is in the event store at the version it was answered with, appended by that operation, with the request's content"}
	for _, o := range x.ops {
		f := o.first()
		if history.IsRead(f.Type) || f.Misuse {
			continue
		}
		acks, acked := o.acks()
		if !acked {
			continue
		}
		r.Checked++
		seen := map[history.Ack]bool{}
		for _, ack := range acks {
			if seen[ack] {
				continue
			}
			seen[ack] = true
			e := x.event(ack.ID, ack.Version)
			if e == nil {
				r.fail(ack.ID, o.last().End, "op %d (%s %s) was acknowledged with version %d, which the event store does not have (it has %d versions)",
					f.Op, f.Method, f.Path, ack.Version, x.lastVersion(ack.ID))
				continue
			}
			if !o.requestIDs()[e.Metadata.RequestID] {
				r.fail(ack.ID, o.last().End, "op %d was acknowledged with version %d, but that version was appended by request %q, not by this operation",
					f.Op, ack.Version, e.Metadata.RequestID)
				continue
			}
			if d := contentDiff(f, e); d != "" {
				r.fail(ack.ID, o.last().End, "op %d, version %d: %s", f.Op, ack.Version, d)
			}
		}
	}
	return r
}

func (x *index) idempotentOnce() Result {
	r := Result{ID: "idempotent-once", Desc: "a keyed write appended exactly once if acknowledged, never if refused, at most once if its outcome stayed open; retries got the first answer; a key reused for another request was refused"}
	for _, o := range x.ops {
		f := o.first()
		if f.IdemKey == "" {
			continue
		}
		r.Checked++
		if f.Misuse {
			for _, a := range o.attempts {
				if a.Status >= 200 && a.Status < 300 {
					r.fail(f.IdemKey, a.End, "op %d reused key %q for a different request and was answered %d %s (want 422 idempotency_key_reused)", f.Op, f.IdemKey, a.Status, a.Resp)
				}
				if evs := x.byReqID[a.RequestID]; len(evs) > 0 {
					r.fail(f.IdemKey, a.End, "op %d reused key %q for a different request and appended %s v%d", f.Op, f.IdemKey, evs[0].AggregateID, evs[0].Version)
				}
			}
			continue
		}
		evs := x.byKey[f.IdemKey]
		acks, acked := o.acks()
		refusal, refused := o.refused()
		switch {
		case acked && len(evs) != 1:
			r.fail(f.IdemKey, o.last().End, "op %d (%s, %d attempts) was acknowledged and appended %d events with its key (want exactly 1)%s", f.Op, f.Type, len(o.attempts), len(evs), listEvents(evs))
		case refused && len(evs) != 0:
			r.fail(f.IdemKey, refusal.End, "op %d (%s) was refused with %d after %d attempts, yet its key appended %d events%s", f.Op, f.Type, refusal.Status, refusal.N, len(evs), listEvents(evs))
		case len(evs) > 1:
			r.fail(f.IdemKey, o.last().End, "op %d (%s, outcome open after %d attempts) appended %d events with its key (at most 1)%s", f.Op, f.Type, len(o.attempts), len(evs), listEvents(evs))
		}
		for _, ack := range acks[min(1, len(acks)):] {
			if ack != acks[0] {
				r.fail(f.IdemKey, o.last().End, "op %d: attempts were answered differently: %+v and %+v", f.Op, acks[0], ack)
				break
			}
		}
	}
	return r
}

func listEvents(evs []*Event) string {
	var parts []string
	for _, e := range evs {
		parts = append(parts, sprintf("%s v%d by request %s", e.AggregateID, e.Version, e.Metadata.RequestID))
	}
	if len(parts) == 0 {
		return ""
	}
	return ": " + strings.Join(parts, ", ")
}

func (x *index) noPhantomWrite() Result {
	r := Result{ID: "no-phantom-write", Desc: "every event in the store (but the oversize faults', appended by the nemesis: relay-dead-letters) was appended by one request of the workload that was not refused, with that request's content"}
	for id, evs := range x.byAgg {
		if x.oversize[id] != nil {
			continue
		}
		for i := range evs {
			e := &evs[i]
			r.Checked++
			a := x.attempt[e.Metadata.RequestID]
			switch {
			case a == nil:
				r.fail(e.AggregateID, e.RecordedAt, "v%d (%s) was appended by request %q, which the workload never sent", e.Version, e.Type, e.Metadata.RequestID)
			case history.IsRead(a.Type):
				r.fail(e.AggregateID, e.RecordedAt, "v%d (%s) was appended by a read (%s)", e.Version, e.Type, a.RequestID)
			case a.Status >= 400 && a.Status < 500:
				r.fail(e.AggregateID, e.RecordedAt, "v%d (%s) was appended by request %s, which was refused with %d %s", e.Version, e.Type, a.RequestID, a.Status, a.Resp)
			case len(x.byReqID[e.Metadata.RequestID]) > 1:
				r.fail(e.AggregateID, e.RecordedAt, "request %s appended %d events (one command appends one)", a.RequestID, len(x.byReqID[e.Metadata.RequestID]))
			default:
				if d := contentDiff(a, e); d != "" {
					r.fail(e.AggregateID, e.RecordedAt, "v%d: %s", e.Version, d)
				}
			}
		}
	}
	return r
}

func (x *index) ifMatch() Result {
	r := Result{ID: "if-match", Desc: "a write with an expected version N answered 2xx created version N+1; a 409 names a current version other than N that the store reached"}
	for _, a := range x.in.Attempts {
		if a.IfMatch <= 0 || a.Misuse {
			continue
		}
		if ack, ok := a.Ack(); ok {
			r.Checked++
			if ack.Version != a.IfMatch+1 {
				r.fail(ack.ID, a.End, "op %d expected version %d and was answered version %d (want %d)", a.Op, a.IfMatch, ack.Version, a.IfMatch+1)
			}
			continue
		}
		if a.Status != 409 {
			continue
		}
		r.Checked++
		var body struct {
			Error struct {
				Details struct {
					Current *int64 `json:"current_version"`
				} `json:"details"`
			} `json:"error"`
		}
		if err := json.Unmarshal(a.Resp, &body); err != nil || body.Error.Details.Current == nil {
			r.fail(a.ID, a.End, "op %d: 409 without error.details.current_version: %s", a.Op, a.Resp)
			continue
		}
		cur := *body.Error.Details.Current
		switch last := x.lastVersion(a.ID); {
		case cur == a.IfMatch:
			r.fail(a.ID, a.End, "op %d: 409 although the expected version %d is the current one", a.Op, a.IfMatch)
		case cur < 1 || cur > last:
			r.fail(a.ID, a.End, "op %d: 409 names current version %d, the store has versions 1..%d", a.Op, cur, last)
		}
	}
	return r
}

// illegal maps an order action to the statuses it is refused in.
var illegal = map[string]map[string]bool{
	history.PayOrder:    {"paid": true, "shipped": true, "cancelled": true},
	history.ShipOrder:   {"created": true, "shipped": true, "cancelled": true},
	history.CancelOrder: {"shipped": true, "cancelled": true},
}

func (x *index) refusalsJustified() Result {
	r := Result{ID: "refusals-justified", Desc: "every 4xx answer to a valid write is backed by the store: 404 only for unknown aggregates, 422 product_deleted after a delete, 422 illegal_transition in a status that forbids it, 409 only with an expected version"}
	for i := range x.in.Attempts {
		a := &x.in.Attempts[i]
		if history.IsRead(a.Type) || a.Status < 400 || a.Status >= 500 {
			continue
		}
		r.Checked++
		code := a.ErrorCode()
		switch {
		case a.Status == 409 && code == "version_conflict" && a.IfMatch > 0:
		case a.Status == 422 && code == "idempotency_key_reused" && a.Misuse:
		case a.Status == 404 && code == "not_found":
			if evs := x.byAgg[a.ID]; len(evs) > 0 && evs[0].RecordedAt.Before(a.Start) {
				r.fail(a.ID, a.End, "op %d (%s) was answered 404, but the aggregate exists since %s", a.Op, a.Type, evs[0].RecordedAt.Format("15:04:05.000"))
			}
		case a.Status == 422 && code == "product_deleted":
			if !x.hasBefore(a.ID, "ProductDeleted", a) {
				r.fail(a.ID, a.End, "op %d (%s) was answered 422 product_deleted, but the store has no ProductDeleted committed before the answer", a.Op, a.Type)
			}
		case a.Status == 422 && code == "illegal_transition":
			status := refusedStatus(a)
			switch {
			case !illegal[a.Type][status]:
				r.fail(a.ID, a.End, "op %d (%s) was refused as illegal in status %q, where it is legal: %s", a.Op, a.Type, status, a.Resp)
			case !x.hasBefore(a.ID, statusEvent[status], a):
				r.fail(a.ID, a.End, "op %d (%s) was refused in status %q, but the store has no %s committed before the answer", a.Op, a.Type, status, statusEvent[status])
			}
		default:
			r.fail(a.ID, a.End, "op %d (%s %s) is a valid request and was answered %d %s", a.Op, a.Method, a.Path, a.Status, a.Resp)
		}
	}
	return r
}

var statusEvent = map[string]string{"created": "OrderCreated", "paid": "OrderPaid", "shipped": "OrderShipped", "cancelled": "OrderCancelled"}

// refusedStatus reads the status from "cannot pay an order that is shipped".
func refusedStatus(a *history.Attempt) string {
	var body struct {
		Error struct {
			Message string `json:"message"`
		} `json:"error"`
	}
	_ = json.Unmarshal(a.Resp, &body)
	if i := strings.LastIndex(body.Error.Message, " that is "); i >= 0 {
		return body.Error.Message[i+len(" that is "):]
	}
	return ""
}

// hasBefore reports whether the aggregate has an event of the type
// committed before the attempt was answered.
func (x *index) hasBefore(id, typ string, a *history.Attempt) bool {
	for _, e := range x.byAgg[id] {
		if e.Type == typ && !e.RecordedAt.After(a.End) {
			return true
		}
	}
	return false
}

var next = map[string]map[string]string{ // order status → event → next status
	"created": {"OrderPaid": "paid", "OrderCancelled": "cancelled"},
	"paid":    {"OrderShipped": "shipped", "OrderCancelled": "cancelled"},
}

func (x *index) domainSequence() Result {
	r := Result{ID: "domain-sequence", Desc: "every aggregate's events are versions 1..n without gaps, start with its Created event, and follow the domain rules (nothing after a product's delete; orders created → paid → shipped, cancel before shipping)"}
	for id, evs := range x.byAgg {
		r.Checked++
		status, deleted := "", false
	events:
		for i, e := range evs {
			if e.Version != int64(i+1) {
				r.fail(id, e.RecordedAt, "version %d at position %d (versions must be 1..n)", e.Version, i+1)
				break
			}
			created := e.Type == "ProductCreated" || e.Type == "OrderCreated"
			if (i == 0) != created {
				r.fail(id, e.RecordedAt, "v%d is %s (only v1 is a Created event)", e.Version, e.Type)
				break
			}
			switch e.AggregateType {
			case "product":
				if deleted {
					r.fail(id, e.RecordedAt, "v%d %s after ProductDeleted", e.Version, e.Type)
				}
				deleted = deleted || e.Type == "ProductDeleted"
			case "order":
				if i == 0 {
					status = "created"
					continue
				}
				to, ok := next[status][e.Type]
				if !ok {
					r.fail(id, e.RecordedAt, "v%d %s in status %s", e.Version, e.Type, status)
					break events
				}
				status = to
			}
		}
	}
	return r
}
