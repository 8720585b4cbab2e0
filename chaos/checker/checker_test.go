package checker

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"cqrsflow/chaos/history"
)

var t0 = time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)

func at(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

const (
	productTopic = "c.product.events"
	orderTopic   = "c.order.events"
	// Known murmur2 vectors (Kafka's UtilsTest): with 12 partitions the
	// key "foobar" goes to partition 6 and "21" to partition 0.
	productID = "foobar"
	orderID   = "21"
	// oversizeID is the aggregate an oversize fault appended to: v1 is
	// dead-lettered (outbox id 60), v2 held in the outbox (id 61).
	oversizeID = "oversize-r-3"
)

// world is a small clean run, built by hand: a product created (keyed,
// first attempt timed out, the retry replayed) and updated with If-Match,
// an order created and paid, one read; every event in the store, in Kafka
// and folded into its document; metrics at 0.
type world struct {
	in Input
}

func attempt(op int64, n int, typ, agg, id, method, path string, ifMatch int64, key, body string, start, end int, status int, resp string) history.Attempt {
	return history.Attempt{Record: "attempt", Op: op, N: n, Type: typ, Aggregate: agg, ID: id, Method: method, Path: path,
		IfMatch: ifMatch, IdemKey: key, RequestID: fmt.Sprintf("r-o%d-a%d", op, n), Body: json.RawMessage(body),
		Start: at(start), End: at(end), Status: status, Resp: json.RawMessage(resp)}
}

func event(pos int64, agg, id string, version int64, typ, payload, reqID, key string, ms int) Event {
	return Event{GlobalPosition: pos, EventID: fmt.Sprintf("e%d", pos), AggregateType: agg, AggregateID: id, Version: version,
		Type: typ, SchemaVersion: 1, Payload: json.RawMessage(payload),
		Metadata:   Metadata{CorrelationID: reqID, IdempotencyKey: key, RequestID: reqID, Principal: "chaos"},
		OccurredAt: at(ms), RecordedAt: at(ms + 1)}
}

// oversizeEvent is an event the nemesis appended to oversizeID.
func oversizeEvent(pos, version int64, typ, payload string, ms int) Event {
	e := event(pos, "product", oversizeID, version, typ, payload, oversizeID, "", ms)
	e.SchemaVersion, e.Metadata.Principal = 2, "chaos-nemesis"
	return e
}

func recordOf(e Event, partition int32, offset int64) Record {
	topic := productTopic
	if e.AggregateType == "order" {
		topic = orderTopic
	}
	v, err := json.Marshal(envelope{EventID: e.EventID, EventType: e.Type, SchemaVersion: e.SchemaVersion, AggregateType: e.AggregateType,
		AggregateID: e.AggregateID, Version: e.Version, OccurredAt: e.OccurredAt, RecordedAt: e.RecordedAt,
		GlobalPosition: e.GlobalPosition, Payload: e.Payload, Metadata: e.Metadata})
	if err != nil {
		panic(err)
	}
	return Record{Topic: topic, Partition: partition, Offset: offset, Key: e.AggregateID, Value: v,
		Headers: map[string]string{"event_id": e.EventID, "event_type": e.Type}}
}

func newWorld() *world {
	const (
		create = `{"name":"lamp 1","description":"desk","price":9.50,"stock":3}`
		update = `{"name":"lamp 1","description":"desk lamp","price":12,"stock":2}`
		order  = `{"user_id":"u1","product_id":"foobar","quantity":2,"total_price":24.00}`
	)
	w := &world{}
	w.in = Input{
		Principal: "chaos",
		Attempts: []history.Attempt{
			attempt(1, 1, history.CreateProduct, "product", "", "POST", "/v1/products", 0, "k1", create, 0, 50, 0, ""),
			attempt(1, 2, history.CreateProduct, "product", "", "POST", "/v1/products", 0, "k1", create, 200, 210, 201, `{"id":"foobar","version":1}`),
			attempt(2, 1, history.UpdateProduct, "product", productID, "PUT", "/v1/products/foobar", 1, "", `{"name":"lamp 1","description":"desk lamp","price":12,"stock":2,"expected_version":1}`, 300, 320, 200, `{"id":"foobar","version":2}`),
			attempt(3, 1, history.CreateOrder, "order", "", "POST", "/v1/orders", 0, "", order, 400, 420, 201, `{"id":"21","version":1}`),
			attempt(4, 1, history.PayOrder, "order", orderID, "POST", "/v1/orders/21/pay", 0, "", `{}`, 500, 520, 200, `{"id":"21","version":2}`),
			attempt(5, 1, history.ShipOrder, "order", orderID, "POST", "/v1/orders/21/ship", 1, "", `{}`, 600, 610, 409, `{"error":{"code":"version_conflict","details":{"current_version":2,"expected_version":1}}}`),
			attempt(6, 1, history.CancelOrder, "order", orderID, "POST", "/v1/orders/21/cancel", 0, "", `{}`, 5000, 5010, 200, `{"id":"21","version":3}`),
			attempt(7, 1, history.PayOrder, "order", orderID, "POST", "/v1/orders/21/pay", 0, "", `{}`, 5100, 5110, 422, `{"error":{"code":"illegal_transition","message":"cannot pay an order that is cancelled"}}`),
		},
		Events: []Event{
			// attempt 1 of op 1 committed before its client gave up
			event(1, "product", productID, 1, "ProductCreated", create, "r-o1-a1", "k1", 10),
			event(2, "product", productID, 2, "ProductUpdated", `{"name":"lamp 1","description":"desk lamp","price":12,"stock":2}`, "r-o2-a1", "", 310),
			event(3, "order", orderID, 1, "OrderCreated", order, "r-o3-a1", "", 410),
			event(4, "order", orderID, 2, "OrderPaid", `{}`, "r-o4-a1", "", 510),
			event(5, "order", orderID, 3, "OrderCancelled", `{}`, "r-o6-a1", "", 5005),
			oversizeEvent(50, 1, "ProductCreated", `{"name":"big","description":"…1.6 MB…","price":1,"currency":"EUR","stock":1}`, 2200),
			oversizeEvent(51, 2, "ProductUpdated", `{"name":"big","description":"held","price":2,"currency":"EUR","stock":1}`, 2200),
		},
		Outbox:         []OutboxRow{{ID: 61, AggregateType: "product", AggregateID: oversizeID, Version: 2, EventID: "e51"}},
		DeadLetters:    []DeadLetter{{ID: 60, AggregateType: "product", AggregateID: oversizeID, Version: 1, EventID: "e50", Reason: "MESSAGE_TOO_LARGE", Error: "MESSAGE_TOO_LARGE: … (record of about 1600512 bytes, over the producer's batch limit of 1000012)", Attempts: 3}},
		PoisonAttempts: 3,
		Topics:         map[string]string{"product": productTopic, "order": orderTopic},
		Partitions:     map[string]int32{productTopic: 12, orderTopic: 12},
		GroupLag:       map[string]int64{"g-products": 0, "g-orders": 0},
		MetricProcs:    []string{"relay-1", "projector-1"},
		Starts:         3,
		LogLines:       100,
		HealedAt:       at(4000),
		Grace:          time.Second,
		Faults: []history.Fault{{Record: "fault", Seq: 1, Kind: "pg-crash", Target: "postgres", Start: at(1000), Healed: at(2000),
			Verified: []string{"postmaster gone"}},
			{Record: "fault", Seq: 2, Kind: "poison", Target: "product", Start: at(2100), Healed: at(2100), Keys: []string{"poison-1"},
				Verified: []string{"produced"}},
			{Record: "fault", Seq: 3, Kind: "oversize", Target: "product", Param: "bytes=1600000", Start: at(2200), Healed: at(2250),
				Keys: []string{oversizeID}, Verified: []string{"committed"}, Appended: []history.Appended{
					{AggregateType: "product", AggregateID: oversizeID, Version: 1, EventID: "e50", OutboxID: 60, PayloadBytes: 1600070},
					{AggregateType: "product", AggregateID: oversizeID, Version: 2, EventID: "e51", OutboxID: 61, PayloadBytes: 70}}}},
		DLQ: []Record{{Topic: productTopic + ".dlq", Key: "poison-1", Headers: map[string]string{"x-dlq-reason": "bad json"}}},
	}
	w.in.Records = []Record{
		recordOf(w.in.Events[0], 6, 0), recordOf(w.in.Events[1], 6, 1),
		recordOf(w.in.Events[2], 0, 0), recordOf(w.in.Events[3], 0, 1), recordOf(w.in.Events[4], 0, 2),
	}
	w.in.Docs = map[string][]Doc{
		"product": {{ID: productID, ESVersion: 2, Source: json.RawMessage(`{"id":"foobar","version":2,"deleted":false,
			"created_at":"2026-03-01T10:00:00.01Z","updated_at":"2026-03-01T10:00:00.31Z","last_event_id":"e2","recorded_at":"2026-03-01T10:00:00.311Z",
			"name":"lamp 1","description":"desk lamp","price":12,"currency":"EUR","stock":2}`)}},
		"order": {{ID: orderID, ESVersion: 3, Source: json.RawMessage(`{"id":"21","version":3,"deleted":false,
			"created_at":"2026-03-01T10:00:00.41Z","updated_at":"2026-03-01T10:00:05.005Z","last_event_id":"e5","recorded_at":"2026-03-01T10:00:05.006Z",
			"user_id":"u1","product_id":"foobar","quantity":2,"total_price":24,"status":"cancelled"}`)}},
	}
	for _, s := range []struct{ p, n string }{
		{"relay-1", "cqrsflow_outbox_pending_events"}, {"relay-1", "cqrsflow_outbox_oldest_pending_age_seconds"},
		{"projector-1", "cqrsflow_projector_consumer_lag_records"}, {"projector-1", "cqrsflow_projector_sync_lag_seconds"},
		{"projector-1", "cqrsflow_projector_parked_events"},
	} {
		w.in.Metrics = append(w.in.Metrics, Sample{Process: s.p, Name: s.n, Labels: map[string]string{"projection": "products"}})
	}
	w.in.Metrics = append(w.in.Metrics, Sample{Process: "relay-1", Name: "cqrsflow_relay_dead_letters", Value: 1},
		Sample{Process: "relay-1", Name: "cqrsflow_relay_held_rows", Value: 1})
	w.in.Metrics = append(w.in.Metrics, Sample{Process: "projector-1", Name: "cqrsflow_projection_verified_total",
		Labels: map[string]string{"projection": "products", "result": "equal"}, Value: 7})
	read := attempt(8, 1, history.ReadProduct, "product", productID, "GET", "/v1/products/foobar?min_version=2&wait=1s", 0, "", "", 700, 710, 200,
		`{"id":"foobar","name":"lamp 1","description":"desk lamp","price":12,"currency":"EUR","stock":2,"version":2,"created_at":"2026-03-01T10:00:00.01Z","updated_at":"2026-03-01T10:00:00.31Z"}`)
	read.MinVersion, read.Body = 2, nil
	// A write refused with 503 while PostgreSQL was down (its outcome is
	// open: nothing was appended).
	down := attempt(10, 1, history.UpdateProduct, "product", productID, "PUT", "/v1/products/foobar", 0, "", `{}`, 1500, 1600, 503, `{"error":{"code":"unavailable"}}`)
	w.in.Attempts = append(w.in.Attempts, down, read)
	return w
}

// results runs the checks and indexes them by id.
func results(t *testing.T, in *Input) map[string]Result {
	t.Helper()
	out := map[string]Result{}
	for _, r := range Check(in) {
		out[r.ID] = r
	}
	return out
}

// wantOnly asserts that exactly the named invariants fail, each with a
// violation on key whose message contains msg.
func wantOnly(t *testing.T, in *Input, key, msg string, ids ...string) {
	t.Helper()
	res := results(t, in)
	want := map[string]bool{}
	for _, id := range ids {
		want[id] = true
		r, ok := res[id]
		if !ok {
			t.Fatalf("no invariant %q", id)
		}
		if r.OK() {
			t.Errorf("%s passed, want a violation on %s", id, key)
			continue
		}
		found := false
		for _, v := range r.Violations {
			if v.Key == key && strings.Contains(v.Msg, msg) {
				found = true
			}
		}
		if !found {
			t.Errorf("%s: no violation on %q containing %q: %+v", id, key, msg, r.Violations)
		}
	}
	for id, r := range res {
		if !want[id] && !r.OK() {
			t.Errorf("%s failed too: %+v", id, r.Violations)
		}
	}
}

func TestCleanRunPasses(t *testing.T) {
	w := newWorld()
	res := Check(&w.in)
	for _, r := range res {
		if !r.OK() {
			t.Errorf("%s: %+v", r.ID, r.Violations)
		}
		if r.Checked == 0 {
			t.Errorf("%s checked nothing: the world does not exercise it", r.ID)
		}
	}
}

func TestLostAck(t *testing.T) {
	w := newWorld()
	// The update's 200 was sent, but version 2 is not in the store (nor
	// downstream: the read model still shows version 1).
	w.in.Events = append(w.in.Events[:1:1], w.in.Events[2:]...)
	res := results(t, &w.in)
	if r := res["ack-durable"]; r.OK() || r.Violations[0].Key != productID || !strings.Contains(r.Violations[0].Msg, "does not have") {
		t.Fatalf("ack-durable: %+v", r.Violations)
	}
}

func TestIdempotentRetryAppendedTwice(t *testing.T) {
	w := newWorld()
	// The retry appended again instead of replaying: a second product
	// carries the same key.
	w.in.Events = append(w.in.Events, event(6, "product", "p-dup", 1, "ProductCreated", `{"name":"lamp 1","description":"desk","price":9.5,"stock":3}`, "r-o1-a2", "k1", 205))
	res := results(t, &w.in)
	r := res["idempotent-once"]
	if r.OK() || r.Violations[0].Key != "k1" || !strings.Contains(r.Violations[0].Msg, "appended 2 events") {
		t.Fatalf("idempotent-once: %+v", r.Violations)
	}
}

func TestRefusedKeyedWriteAppended(t *testing.T) {
	w := newWorld()
	w.in.Attempts[1].Status, w.in.Attempts[1].Resp = 409, json.RawMessage(`{"error":{"code":"version_conflict"}}`)
	res := results(t, &w.in)
	if r := res["idempotent-once"]; r.OK() || !strings.Contains(r.Violations[0].Msg, "refused with 409") {
		t.Fatalf("idempotent-once: %+v", r.Violations)
	}
}

func TestRetryAnsweredDifferently(t *testing.T) {
	w := newWorld()
	a := w.in.Attempts[1]
	a.N, a.RequestID, a.Resp = 3, "r-o1-a3", json.RawMessage(`{"id":"other","version":1}`)
	w.in.Attempts = append(w.in.Attempts, a)
	res := results(t, &w.in)
	if r := res["idempotent-once"]; r.OK() || !strings.Contains(r.Violations[0].Msg, "answered differently") {
		t.Fatalf("idempotent-once: %+v", r.Violations)
	}
}

func TestKeyMisuseAccepted(t *testing.T) {
	w := newWorld()
	a := attempt(9, 1, history.CreateProduct, "product", "", "POST", "/v1/products", 0, "k1", `{"name":"x","price":1,"stock":1}`, 800, 810, 201, `{"id":"foobar","version":1}`)
	a.Misuse = true
	w.in.Attempts = append(w.in.Attempts, a)
	wantOnly(t, &w.in, "k1", "different request", "idempotent-once")
}

func TestPhantomWrite(t *testing.T) {
	w := newWorld()
	e := event(6, "order", orderID, 4, "OrderShipped", `{}`, "r-unknown", "", 5200)
	w.in.Events = append(w.in.Events, e)
	w.in.Records = append(w.in.Records, recordOf(e, 0, 3))
	res := results(t, &w.in)
	if r := res["no-phantom-write"]; r.OK() || !strings.Contains(r.Violations[0].Msg, "never sent") {
		t.Fatalf("no-phantom-write: %+v", r.Violations)
	}
	if r := res["domain-sequence"]; r.OK() || !strings.Contains(r.Violations[0].Msg, "OrderShipped in status cancelled") {
		t.Fatalf("domain-sequence: %+v", r.Violations)
	}
}

func TestIfMatchWrongVersion(t *testing.T) {
	w := newWorld()
	w.in.Attempts[5].Status, w.in.Attempts[5].Resp = 409, json.RawMessage(`{"error":{"code":"version_conflict","details":{"current_version":1}}}`)
	wantOnly(t, &w.in, orderID, "is the current one", "if-match")
}

func TestIllegalTransitionRefusedWrongly(t *testing.T) {
	w := newWorld()
	w.in.Attempts[7].Resp = json.RawMessage(`{"error":{"code":"illegal_transition","message":"cannot pay an order that is created"}}`)
	wantOnly(t, &w.in, orderID, "where it is legal", "refusals-justified")
}

func TestKafkaOrderViolation(t *testing.T) {
	w := newWorld()
	w.in.Records[0].Offset, w.in.Records[1].Offset = 1, 0
	wantOnly(t, &w.in, productID, "v2 before any v1", "kafka-order")
}

func TestKafkaDuplicatesAllowed(t *testing.T) {
	w := newWorld()
	// v1 and v2 again after v2 (a relay republished its batch): allowed.
	w.in.Records = append(w.in.Records, recordOf(w.in.Events[0], 6, 2), recordOf(w.in.Events[1], 6, 3))
	wantOnly(t, &w.in, "", "")
	if n := DuplicateRecords(&w.in); n != 2 {
		t.Fatalf("DuplicateRecords = %d, want 2", n)
	}
}

func TestWrongPartition(t *testing.T) {
	w := newWorld()
	w.in.Records[0].Partition = 5
	wantOnly(t, &w.in, productID, "murmur2 puts the key in 6 of 12", "kafka-partition")
}

func TestEventMissingFromKafka(t *testing.T) {
	w := newWorld()
	w.in.Records = w.in.Records[:4]
	wantOnly(t, &w.in, orderID, "not in Kafka", "kafka-complete")
}

func TestRecordDiffersFromStore(t *testing.T) {
	w := newWorld()
	e := w.in.Events[1]
	e.Payload = json.RawMessage(`{"name":"lamp 1","description":"desk lamp","price":13,"stock":2}`)
	w.in.Records[1] = recordOf(e, 6, 1)
	wantOnly(t, &w.in, productID, "payload", "kafka-faithful")
}

func TestPoisonNotInDLQ(t *testing.T) {
	w := newWorld()
	w.in.Faults[1].Keys = append(w.in.Faults[1].Keys, "poison-2")
	wantOnly(t, &w.in, "poison-2", "not in the dead-letter topic", "dlq")
	w.in.DLQ = append(w.in.DLQ, Record{Topic: productTopic + ".dlq", Key: productID, Headers: map[string]string{"x-dlq-reason": "x"}},
		Record{Topic: productTopic + ".dlq", Key: "poison-2", Headers: map[string]string{"x-dlq-reason": "x"}})
	wantOnly(t, &w.in, productID, "not poison", "dlq")
}

func TestDocDiffersFromFold(t *testing.T) {
	w := newWorld()
	w.in.Docs["product"][0].Source = json.RawMessage(strings.Replace(string(w.in.Docs["product"][0].Source), `"price":12`, `"price":9.5`, 1))
	wantOnly(t, &w.in, productID, "price: document 9.5, events 12", "read-model")
}

func TestDocMissing(t *testing.T) {
	w := newWorld()
	w.in.Docs["order"] = nil
	wantOnly(t, &w.in, orderID, "no order document", "read-model")
}

func TestDocWrongExternalVersion(t *testing.T) {
	w := newWorld()
	w.in.Docs["order"][0].ESVersion = 2
	wantOnly(t, &w.in, orderID, "_version 2", "read-model")
}

func TestOrphanDoc(t *testing.T) {
	w := newWorld()
	w.in.Docs["product"] = append(w.in.Docs["product"], Doc{ID: "ghost", ESVersion: 1, Source: json.RawMessage(`{"id":"ghost","version":1}`)})
	wantOnly(t, &w.in, "ghost", "without events", "no-orphan-doc")
}

func TestStaleReadWithoutHeader(t *testing.T) {
	w := newWorld()
	w.in.Attempts[len(w.in.Attempts)-1].MinVersion = 3
	wantOnly(t, &w.in, productID, "asked min_version 3, got v2", "reads")
}

func TestReadDiffersFromStore(t *testing.T) {
	w := newWorld()
	r := &w.in.Attempts[len(w.in.Attempts)-1]
	r.Resp = json.RawMessage(strings.Replace(string(r.Resp), `"stock":2`, `"stock":7`, 1))
	wantOnly(t, &w.in, productID, "stock: document 7, events 2", "reads")
}

// searchAttempt is a product search answered 200 with page.
func searchAttempt(op int64, page string) history.Attempt {
	a := attempt(op, 1, history.SearchProducts, "product", "", "GET", "/v1/products/search?limit=5&q=lamp", 0, "", "", 720, 730, 200, page)
	a.Body = nil
	return a
}

const (
	lampV1 = `{"id":"foobar","name":"lamp 1","description":"desk","price":9.5,"currency":"EUR","stock":3,"version":1,"created_at":"2026-03-01T10:00:00.01Z","updated_at":"2026-03-01T10:00:00.01Z"}`
	lampV2 = `{"id":"foobar","name":"lamp 1","description":"desk lamp","price":12,"currency":"EUR","stock":2,"version":2,"created_at":"2026-03-01T10:00:00.01Z","updated_at":"2026-03-01T10:00:00.31Z"}`
)

// A search's products are each held to the fold at their version: an
// older version is fine (near-real-time), a wrong field, a version the
// store does not have or a page that is not one are not.
func TestSearchReads(t *testing.T) {
	w := newWorld()
	w.in.Attempts = append(w.in.Attempts, searchAttempt(30, `{"items":[`+lampV2+`],"page":1,"limit":5,"total":1}`),
		searchAttempt(31, `{"items":[`+lampV1+`],"page":1,"limit":5,"total":4}`), searchAttempt(32, `{"items":[],"page":1,"limit":5,"total":0}`))
	if r := results(t, &w.in)["reads"]; !r.OK() || r.Checked < 6 {
		t.Fatalf("good searches: %+v (checked %d)", r.Violations, r.Checked)
	}
	for name, c := range map[string]struct{ page, key, msg string }{
		"field":      {`{"items":[` + strings.Replace(lampV2, `"stock":2`, `"stock":9`, 1) + `],"total":1}`, productID, "stock: document 9, events 2"},
		"version":    {`{"items":[` + strings.Replace(lampV2, `"version":2`, `"version":5`, 1) + `],"total":1}`, productID, "at version 5, the store has 2"},
		"unknown":    {`{"items":[` + strings.Replace(lampV2, `"id":"foobar"`, `"id":"ghost"`, 1) + `],"total":1}`, "ghost", "the store has 0"},
		"not a page": {`[` + lampV2 + `]`, "search", "not a page"},
		"no total":   {`{"items":[]}`, "search", "not a page"},
		"total":      {`{"items":[` + lampV2 + `],"total":0}`, "search", "total 0 below the 1 items"},
	} {
		t.Run(name, func(t *testing.T) {
			w := newWorld()
			w.in.Attempts = append(w.in.Attempts, searchAttempt(30, c.page))
			wantOnly(t, &w.in, c.key, c.msg, "reads")
		})
	}
	w = newWorld()
	refused := searchAttempt(30, `{"error":{"code":"invalid_parameter"}}`)
	refused.Status = 400
	w.in.Attempts = append(w.in.Attempts, refused)
	wantOnly(t, &w.in, "search", "was answered 400", "reads")
}

// A get answered with another aggregate's document fails (a batched
// _mget that gave a read another read's part would).
func TestReadOfAnotherID(t *testing.T) {
	w := newWorld()
	r := &w.in.Attempts[len(w.in.Attempts)-1]
	r.ID = "other"
	wantOnly(t, &w.in, "other", "asked for other and got foobar", "reads")
}

// A read the api refuses (401: the workload sent no credential) fails
// the invariant instead of leaving it with nothing to check.
func TestRefusedReadFails(t *testing.T) {
	for _, status := range []int{400, 401, 403, 500} {
		w := newWorld()
		w.in.Attempts[len(w.in.Attempts)-1].Status = status
		w.in.Attempts[len(w.in.Attempts)-1].Resp = json.RawMessage(`{"error":{"code":"unauthenticated"}}`)
		res := results(t, &w.in)
		if r := res["reads"]; len(r.Violations) != 1 || !strings.Contains(r.Violations[0].Msg, fmt.Sprintf("was answered %d", status)) {
			t.Errorf("status %d: reads %+v", status, r.Violations)
		}
	}
	for _, status := range []int{0, 429, 503} {
		w := newWorld()
		w.in.Attempts[len(w.in.Attempts)-1].Status = status
		if r := results(t, &w.in)["reads"]; len(r.Violations) != 0 {
			t.Errorf("status %d: reads %+v, want no violation (http-5xx judges 503s)", status, r.Violations)
		}
	}
}

func TestNonzeroLag(t *testing.T) {
	w := newWorld()
	w.in.GroupLag["g-orders"] = 5
	w.in.Outbox = append(w.in.Outbox, OutboxRow{ID: 70, AggregateType: "order", AggregateID: orderID, Version: 3, EventID: "e5"})
	res := results(t, &w.in)
	if r := res["drained"]; len(r.Violations) != 2 || !strings.Contains(r.Violations[0].Msg, "1 outbox rows left (besides 1 held") ||
		!strings.Contains(r.Violations[1].Msg, "5 records behind") {
		t.Fatalf("drained: %+v", r.Violations)
	}
	w = newWorld()
	w.in.Metrics[2].Value = 3 // consumer lag
	wantOnly(t, &w.in, "projector-1", "consumer_lag_records = 3", "metrics-truthful")
	w = newWorld()
	w.in.Metrics = slices.DeleteFunc(w.in.Metrics, func(s Sample) bool { return s.Name == "cqrsflow_projector_parked_events" })
	wantOnly(t, &w.in, "projector-1", "does not report cqrsflow_projector_parked_events", "metrics-truthful")
}

func TestHTTP5xx(t *testing.T) {
	w := newWorld()
	// A 503 inside the PostgreSQL crash window (plus grace) is fine.
	a := attempt(20, 1, history.UpdateProduct, "product", productID, "PUT", "/v1/products/foobar", 0, "", `{}`, 2500, 2600, 503, `{"error":{"code":"unavailable"}}`)
	w.in.Attempts = append(w.in.Attempts, a)
	wantOnly(t, &w.in, "", "")
	// Outside it, it is not; a 500 never is.
	a.Op, a.RequestID, a.Start, a.End = 21, "r-o21-a1", at(3500), at(3600)
	w.in.Attempts = append(w.in.Attempts, a)
	wantOnly(t, &w.in, productID, "no fault made PostgreSQL unavailable", "http-5xx")
	w = newWorld()
	a.Status, a.Start, a.End = 500, at(1500), at(1600)
	w.in.Attempts = append(w.in.Attempts, a)
	wantOnly(t, &w.in, productID, "answered 500", "http-5xx")
}

func TestPanicExitsFaultsRecovery(t *testing.T) {
	w := newWorld()
	w.in.LogHits = []LogHit{{Process: "api", File: "api.log", Line: 7, Text: "panic: runtime error"}}
	wantOnly(t, &w.in, "api", "panic: runtime error", "no-panic")
	w = newWorld()
	w.in.DriftLogs = []LogHit{{Process: "projector-1", File: "projector-1.log", Line: 9, Text: `{"msg":"read model drift: the document is not what the events fold into"}`}}
	wantOnly(t, &w.in, "projector-1", "read model drift", "no-drift")
	w = newWorld()
	w.in.Exits = []Exit{{Process: "relay-1", Status: "exit status 1"}, {Process: "projector-1", Status: "signal: killed", Expected: true},
		{Process: "projector-2", Status: "exit status 1", Expected: true, Graceful: true}}
	res := results(t, &w.in)
	if r := res["processes"]; len(r.Violations) != 2 {
		t.Fatalf("processes: %+v", r.Violations)
	}
	w = newWorld()
	w.in.Hangs = []Hang{{Process: "projector-2", Msg: "alive but /healthz unanswered for 1m31s"}}
	wantOnly(t, &w.in, "projector-2", "hung: alive but /healthz unanswered", "processes")
	w = newWorld()
	// A process that exits while it starts (a dependency down) is not a
	// violation, nor its SIGTERM then.
	w.in.Exits = []Exit{{Process: "projector-1", Status: "exit status 1", DuringStartup: true},
		{Process: "projector-1", Status: "exit status 1", Expected: true, Graceful: true, DuringStartup: true}}
	wantOnly(t, &w.in, "", "")
	w = newWorld()
	w.in.Faults[0].Verified = nil
	wantOnly(t, &w.in, "pg-crash postgres", "nothing verified", "faults-verified")
	w = newWorld()
	w.in.HealedAt = at(6000)
	wantOnly(t, &w.in, "api", "none of 0 writes", "recovered")
}

func TestDomainSequenceGap(t *testing.T) {
	w := newWorld()
	w.in.Events[4].Version = 4
	res := results(t, &w.in)
	if r := res["domain-sequence"]; r.OK() || !strings.Contains(r.Violations[0].Msg, "version 4 at position 3") {
		t.Fatalf("domain-sequence: %+v", r.Violations)
	}
}

func TestMurmur2KnownVectors(t *testing.T) {
	for in, want := range map[string]int32{
		"21": -973932308, "foobar": -790332482, "a-little-bit-long-string": -985981536,
		"a-little-bit-longer-string": -1486304829, "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971, "abc": 479470107,
	} {
		if got := murmur2([]byte(in)); got != want {
			t.Errorf("murmur2(%q) = %d, want %d", in, got, want)
		}
	}
}

// A v2 product event carries the currency the api added (EUR) when the
// request named none; another currency than the request's, or one added
// to a v1 event, is a content difference.
func TestContentWithDefaultCurrency(t *testing.T) {
	a := &history.Attempt{Type: history.CreateProduct, Body: []byte(`{"name":"x","price":1,"stock":1}`)}
	for _, tc := range []struct {
		version int
		payload string
		same    bool
	}{
		{2, `{"name":"x","price":1,"stock":1,"currency":"EUR"}`, true},
		{2, `{"name":"x","price":1,"stock":1,"currency":"USD"}`, false},
		{2, `{"name":"x","price":1,"stock":1}`, false},
		{1, `{"name":"x","price":1,"stock":1}`, true},
		{1, `{"name":"x","price":1,"stock":1,"currency":"EUR"}`, false},
	} {
		e := &Event{Type: "ProductCreated", SchemaVersion: tc.version, Payload: json.RawMessage(tc.payload)}
		if d := contentDiff(a, e); (d == "") != tc.same {
			t.Errorf("v%d %s: diff %q, want same=%v", tc.version, tc.payload, d, tc.same)
		}
	}
	usd := &history.Attempt{Type: history.CreateProduct, Body: []byte(`{"name":"x","price":1,"stock":1,"currency":"USD"}`)}
	if d := contentDiff(usd, &Event{Type: "ProductCreated", SchemaVersion: 2, Payload: json.RawMessage(`{"name":"x","price":1,"stock":1,"currency":"EUR"}`)}); d == "" {
		t.Error("a USD request stored as EUR passed")
	}
}

// want is one violation an invariant must report.
type want struct{ id, key, msg string }

// wantExactly asserts that exactly the invariants named in ws fail, each
// with the violations named (and possibly others).
func wantExactly(t *testing.T, in *Input, ws ...want) {
	t.Helper()
	res := results(t, in)
	named := map[string]bool{}
	for _, w := range ws {
		named[w.id] = true
		r, ok := res[w.id]
		if !ok {
			t.Fatalf("no invariant %q", w.id)
		}
		if !slices.ContainsFunc(r.Violations, func(v Violation) bool { return v.Key == w.key && strings.Contains(v.Msg, w.msg) }) {
			t.Errorf("%s: no violation on %q containing %q: %+v", w.id, w.key, w.msg, r.Violations)
		}
	}
	for id, r := range res {
		if !named[id] && !r.OK() {
			t.Errorf("%s failed too: %+v", id, r.Violations)
		}
	}
}

// setGauge sets a relay-1 gauge of the world (the relay reporting what a
// broken store holds, so only the invariant under test fails).
func setGauge(in *Input, name string, v float64) {
	for i := range in.Metrics {
		if in.Metrics[i].Process == "relay-1" && in.Metrics[i].Name == name {
			in.Metrics[i].Value = v
		}
	}
}

// The relay never dead-lettered the oversized row: it is still in the
// outbox, and its aggregate's v2 with it, not held.
func TestOversizeNotDeadLettered(t *testing.T) {
	w := newWorld()
	w.in.DeadLetters = nil
	w.in.Outbox = append([]OutboxRow{{ID: 60, AggregateType: "product", AggregateID: oversizeID, Version: 1, EventID: "e50"}}, w.in.Outbox...)
	setGauge(&w.in, "cqrsflow_relay_dead_letters", 0)
	setGauge(&w.in, "cqrsflow_relay_held_rows", 0)
	wantExactly(t, &w.in, want{"relay-dead-letters", oversizeID, "v1 (event e50) is not in outbox_dead_letters: still in the outbox (id 60)"},
		want{"drained", "outbox", "2 outbox rows left"})
	// Nor anywhere else (deleted as if acknowledged).
	w.in.Outbox = w.in.Outbox[1:]
	wantExactly(t, &w.in, want{"relay-dead-letters", oversizeID, "not in outbox_dead_letters: nowhere"},
		want{"drained", "outbox", "1 outbox rows left"})
}

// Dead-lettered, but not for its size, or before its attempts.
func TestOversizeDeadLetteredWrongly(t *testing.T) {
	w := newWorld()
	w.in.DeadLetters[0].Reason = "INVALID_RECORD"
	wantExactly(t, &w.in, want{"relay-dead-letters", oversizeID, `dead-lettered for "INVALID_RECORD"`})
	w = newWorld()
	w.in.DeadLetters[0].Attempts = 1
	wantExactly(t, &w.in, want{"relay-dead-letters", oversizeID, "after 1 attempt(s), POISON_ATTEMPTS is 3"})
	w = newWorld()
	w.in.DeadLetters[0].ID = 59 // not the row's outbox id
	wantExactly(t, &w.in, want{"relay-dead-letters", oversizeID, "dead letter has id 59, its outbox row had id 60"})
}

// An oversize event found in Kafka: published by a relay that ignored
// the limit, or the held v2 published past its dead letter.
func TestOversizeEventInKafka(t *testing.T) {
	w := newWorld()
	p := partitionOf(oversizeID, 12)
	w.in.Records = append(w.in.Records, recordOf(w.in.Events[5], p, 0))
	wantExactly(t, &w.in, want{"relay-dead-letters", oversizeID, "v1 (event e50) of the oversize aggregate is in Kafka"})

	w = newWorld()
	w.in.Records = append(w.in.Records, recordOf(w.in.Events[6], p, 0))
	w.in.Outbox = nil
	setGauge(&w.in, "cqrsflow_relay_held_rows", 0)
	wantExactly(t, &w.in, want{"relay-dead-letters", oversizeID, "v2 (event e51) of the oversize aggregate is in Kafka"},
		want{"relay-dead-letters", oversizeID, "v2 (event e51) is not held in the outbox"},
		want{"kafka-order", oversizeID, "holds v2 before any v1"})

	// A relay without a limit: both published, nothing dead-lettered, and
	// the projector made a document of it.
	w = newWorld()
	w.in.Records = append(w.in.Records, recordOf(w.in.Events[5], p, 0), recordOf(w.in.Events[6], p, 1))
	w.in.Outbox, w.in.DeadLetters = nil, nil
	setGauge(&w.in, "cqrsflow_relay_dead_letters", 0)
	setGauge(&w.in, "cqrsflow_relay_held_rows", 0)
	w.in.Docs["product"] = append(w.in.Docs["product"], Doc{ID: oversizeID, ESVersion: 2, Source: json.RawMessage(`{"id":"oversize-r-3","version":2}`)})
	wantExactly(t, &w.in, want{"relay-dead-letters", oversizeID, "not in outbox_dead_letters: nowhere"},
		want{"relay-dead-letters", oversizeID, "v1 (event e50) of the oversize aggregate is in Kafka"},
		want{"relay-dead-letters", oversizeID, "has an Elasticsearch document"})
}

// A workload event in the dead letters (and the rows behind it held).
func TestWorkloadEventDeadLettered(t *testing.T) {
	w := newWorld()
	w.in.DeadLetters = append(w.in.DeadLetters, DeadLetter{ID: 4, AggregateType: "order", AggregateID: orderID, Version: 2, EventID: "e4",
		Reason: "MESSAGE_TOO_LARGE", Error: "too large", Attempts: 3})
	w.in.Outbox = append(w.in.Outbox, OutboxRow{ID: 5, AggregateType: "order", AggregateID: orderID, Version: 3, EventID: "e5"})
	setGauge(&w.in, "cqrsflow_relay_dead_letters", 2)
	setGauge(&w.in, "cqrsflow_relay_held_rows", 2)
	wantExactly(t, &w.in, want{"relay-dead-letters", orderID, "v2 (event e4, outbox id 4) was dead-lettered"},
		want{"relay-dead-letters", orderID, "v3 (outbox id 5) is left in the outbox"},
		want{"drained", "outbox", "1 outbox rows left (besides 1 held"})
	// The oversize aggregate's v2 dead-lettered too.
	w = newWorld()
	w.in.DeadLetters = append(w.in.DeadLetters, DeadLetter{ID: 61, AggregateType: "product", AggregateID: oversizeID, Version: 2, EventID: "e51",
		Reason: "MESSAGE_TOO_LARGE", Attempts: 3})
	w.in.Outbox = nil
	setGauge(&w.in, "cqrsflow_relay_dead_letters", 2)
	setGauge(&w.in, "cqrsflow_relay_held_rows", 0)
	wantExactly(t, &w.in, want{"relay-dead-letters", oversizeID, "v2 (outbox id 61) was dead-lettered"},
		want{"relay-dead-letters", oversizeID, "v2 (event e51) is not held in the outbox"})
}

// The held row missing (published or deleted), or an extra row left.
func TestHeldRowMissingOrExtraRow(t *testing.T) {
	w := newWorld()
	w.in.Outbox = nil
	setGauge(&w.in, "cqrsflow_relay_held_rows", 0)
	wantExactly(t, &w.in, want{"relay-dead-letters", oversizeID, "v2 (event e51) is not held in the outbox"})
	w = newWorld()
	w.in.Outbox = append(w.in.Outbox, OutboxRow{ID: 62, AggregateType: "order", AggregateID: orderID, Version: 3, EventID: "e5"})
	setGauge(&w.in, "cqrsflow_outbox_pending_events", 1)
	wantExactly(t, &w.in, want{"relay-dead-letters", orderID, "v3 (outbox id 62) is left in the outbox"},
		want{"drained", "outbox", "1 outbox rows left"},
		want{"metrics-truthful", "relay-1", "cqrsflow_outbox_pending_events = 1 after the pipeline drained, want 0"})
	// The held row below its dead letter: not held, so left over.
	w = newWorld()
	w.in.Outbox[0].ID = 59
	setGauge(&w.in, "cqrsflow_relay_held_rows", 0)
	wantExactly(t, &w.in, want{"relay-dead-letters", oversizeID, "outbox row 59 is below its dead letter 60"},
		want{"drained", "outbox", "1 outbox rows left (besides 0 held"})
}

// The relay's gauges must say what the store holds: one dead letter,
// one held row, nothing pending.
func TestRelayGaugesUntruthful(t *testing.T) {
	w := newWorld()
	setGauge(&w.in, "cqrsflow_relay_dead_letters", 0)
	wantExactly(t, &w.in, want{"metrics-truthful", "relay-1", "cqrsflow_relay_dead_letters = 0 after the pipeline drained, want 1"})
	w = newWorld()
	setGauge(&w.in, "cqrsflow_outbox_pending_events", 1) // the held row counted as pending
	wantExactly(t, &w.in, want{"metrics-truthful", "relay-1", "cqrsflow_outbox_pending_events = 1"})
	w = newWorld()
	w.in.Metrics = slices.DeleteFunc(w.in.Metrics, func(s Sample) bool { return s.Name == "cqrsflow_relay_held_rows" })
	wantExactly(t, &w.in, want{"metrics-truthful", "relay-1", "does not report cqrsflow_relay_held_rows"})
}

// The fault's record and the store disagree; a failed oversize fault
// that committed nothing expects nothing but its failure; the
// projector's dead-letter topic never expects oversize keys.
func TestOversizeFaultRecord(t *testing.T) {
	w := newWorld()
	w.in.Faults[2].Appended[0].EventID = "e49"
	wantExactly(t, &w.in, want{"relay-dead-letters", oversizeID, "committed v1 (event e49), which the store does not have"})

	w = newWorld()
	w.in.Faults = append(w.in.Faults, history.Fault{Record: "fault", Seq: 4, Kind: "oversize", Target: "order", Keys: []string{"oversize-r-4"},
		Start: at(3000), Healed: at(3000), Err: "appending the oversize events: connection refused"})
	wantExactly(t, &w.in, want{"faults-verified", "oversize order", "connection refused"})

	w = newWorld()
	w.in.DLQ = append(w.in.DLQ, Record{Topic: productTopic + ".dlq", Key: oversizeID, Headers: map[string]string{"x-dlq-reason": "x"}})
	wantExactly(t, &w.in, want{"dlq", oversizeID, "not poison"})
}
