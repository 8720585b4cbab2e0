package projector

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kgo"

	"cqrsflow/internal/esindex"
	"cqrsflow/internal/projection/products"
)

func quarantined(p *processor) map[string]QuarantineEntry {
	set := p.quar.(*quarantineSet)
	set.mu.Lock()
	defer set.mu.Unlock()
	out := map[string]QuarantineEntry{}
	for id, it := range set.m {
		out[id] = it.e
	}
	return out
}

func deadLetters(m *Metrics, reason string) float64 {
	return testutil.ToFloat64(m.DeadLetters.WithLabelValues("products", reason))
}

// committable is the offset the partition "t"/0 may commit.
func committable(p *processor) int64 {
	return p.parts.toCommit(nil)["t"][0].Offset
}

// An unknown event type in the middle of an aggregate's stream: the event
// is dead-lettered, the aggregate is quarantined at its version, its later
// events are held in the DLQ (in this batch and in later ones), other
// aggregates keep flowing and the partition's commit moves past
// everything.
func TestProcessorQuarantinesMidStreamPoison(t *testing.T) {
	p, st, dlq, m := newTestProcessor()
	ctx := context.Background()
	batch := []*kgo.Record{
		rec("a", products.Created, 1, pl),
		rec("a", "ProductRenamed", 2, `{"name":"new"}`),
		rec("a", products.Updated, 3, pl),
		rec("b", products.Created, 1, pl),
		rec("a", products.Updated, 4, pl),
		rec("b", products.Updated, 2, pl),
	}
	if err := p.handle(ctx, batch); err != nil {
		t.Fatal(err)
	}
	if st.docs["a"].Version != 1 || st.docs["b"].Version != 2 {
		t.Fatalf("a at v%d, b at v%d; want 1 and 2", st.docs["a"].Version, st.docs["b"].Version)
	}
	if got, want := dlq.codes()["a"], []string{"unprojectable@2", "quarantined_after@3", "quarantined_after@4"}; !slices.Equal(got, want) {
		t.Errorf("dead letters of a: %v, want %v", got, want)
	}
	q := quarantined(p)["a"]
	if q.BlockedVersion != 2 || q.Reason != ReasonUnprojectable || q.Offset != batch[1].Offset || q.Projection != "products" {
		t.Errorf("quarantine entry %+v, want a blocked at v2 (unprojectable) pointing at offset %d", q, batch[1].Offset)
	}
	if got := committable(p); got != batch[len(batch)-1].Offset+1 {
		t.Errorf("committable %d, want %d: nothing may pin the partition", got, batch[len(batch)-1].Offset+1)
	}
	for _, l := range dlq.letters[1:] {
		if l.Blocked == nil || l.Blocked.Version != 2 || l.Blocked.Offset != batch[1].Offset {
			t.Errorf("held letter %+v does not name the blocking event", l)
		}
	}

	// Later events of a are held without reading its document; b flows.
	calls := st.calls
	later := []*kgo.Record{rec("a", products.Updated, 5, pl)}
	if err := p.handle(ctx, later); err != nil {
		t.Fatal(err)
	}
	if st.calls != calls {
		t.Errorf("a held event read the store (%d calls)", st.calls-calls)
	}
	if err := p.handle(ctx, []*kgo.Record{rec("b", products.Updated, 3, pl)}); err != nil {
		t.Fatal(err)
	}
	if got := dlq.codes()["a"]; len(got) != 4 || got[3] != "quarantined_after@5" || st.docs["b"].Version != 3 {
		t.Errorf("after more events: a's dead letters %v, b at v%d", got, st.docs["b"].Version)
	}
	if deadLetters(m, ReasonUnprojectable) != 1 || deadLetters(m, ReasonQuarantinedAfter) != 3 ||
		testutil.ToFloat64(m.HeldEvents.WithLabelValues("products")) != 3 || count(m, OutcomeDLQ) != 4 ||
		testutil.ToFloat64(m.Quarantined.WithLabelValues("products")) != 1 {
		t.Errorf("metrics: unprojectable %v, quarantined_after %v, held %v, dlq %v, quarantined %v",
			deadLetters(m, ReasonUnprojectable), deadLetters(m, ReasonQuarantinedAfter),
			testutil.ToFloat64(m.HeldEvents.WithLabelValues("products")), count(m, OutcomeDLQ),
			testutil.ToFloat64(m.Quarantined.WithLabelValues("products")))
	}

	// The blocking event delivered again (a crash before the commit) is
	// dead-lettered again but does not move the quarantine.
	before := quarantined(p)["a"]
	if err := p.handle(ctx, []*kgo.Record{batch[1]}); err != nil {
		t.Fatal(err)
	}
	if after := quarantined(p)["a"]; after != before {
		t.Errorf("a redelivered blocker changed the entry: %+v → %+v", before, after)
	}
}

// The first event of an aggregate is poison: there is no document, the
// aggregate is quarantined at version 1.
func TestProcessorPoisonFirstEvent(t *testing.T) {
	p, st, dlq, _ := newTestProcessor()
	if err := p.handle(context.Background(), []*kgo.Record{
		rec("n", products.Updated, 1, pl), // cannot start a product
		rec("n", products.Updated, 2, pl),
	}); err != nil {
		t.Fatal(err)
	}
	if _, ok := st.docs["n"]; ok {
		t.Error("a document was written")
	}
	if got := dlq.codes()["n"]; !slices.Equal(got, []string{"unprojectable@1", "quarantined_after@2"}) {
		t.Errorf("dead letters %v", got)
	}
	if q := quarantined(p)["n"]; q.BlockedVersion != 1 {
		t.Errorf("entry %+v, want blocked at v1", q)
	}
}

// Records that fail validation: an aggregate id over 512 bytes is
// dead-lettered (it can never be indexed) without a quarantine; malformed
// JSON whose aggregate can still be read blocks that aggregate; a record
// of another aggregate type, or unreadable bytes, are dead-lettered alone.
func TestProcessorInvalidRecords(t *testing.T) {
	p, st, dlq, m := newTestProcessor()
	long := rec(strings.Repeat("x", 600), products.Created, 1, pl)
	trailing := rec("t", products.Updated, 2, pl)
	trailing.Value = append(trailing.Value[:len(trailing.Value)-1], []byte(`,}`)...)
	order := rec("o", "OrderCreated", 1, `{}`)
	order.Value = []byte(strings.Replace(string(order.Value), `"aggregate_type":"product"`, `"aggregate_type":"order"`, 1))
	offset++
	junk := &kgo.Record{Topic: "t", Offset: offset, Value: []byte{0xff, 0x00}}
	batch := []*kgo.Record{rec("t", products.Created, 1, pl), long, trailing, order, junk, rec("t", products.Updated, 3, pl), rec("ok", products.Created, 1, pl)}
	if err := p.handle(context.Background(), batch); err != nil {
		t.Fatal(err)
	}
	if st.docs["t"].Version != 1 || st.docs["ok"].Version != 1 {
		t.Errorf("t at v%d, ok at v%d; want 1 and 1", st.docs["t"].Version, st.docs["ok"].Version)
	}
	if got := dlq.codes()["t"]; !slices.Equal(got, []string{"invalid_envelope@2", "quarantined_after@3"}) {
		t.Errorf("dead letters of t: %v", got)
	}
	q := quarantined(p)
	if len(q) != 1 || q["t"].BlockedVersion != 2 || q["t"].Reason != ReasonInvalidEnvelope {
		t.Errorf("quarantined %+v, want only t at v2", q)
	}
	for reason, want := range map[string]float64{ReasonIDTooLong: 1, ReasonWrongAggregate: 1, ReasonInvalidEnvelope: 2, ReasonQuarantinedAfter: 1} {
		if got := deadLetters(m, reason); got != want {
			t.Errorf("dead letters %s = %v, want %v", reason, got, want)
		}
	}
	if got := committable(p); got != batch[len(batch)-1].Offset+1 {
		t.Errorf("committable %d, want past the batch", got)
	}
}

// rejectingStore refuses documents for good: an item 400 for a stock of
// 666, a whole-request 400 for a request containing the id "bad-id".
type rejectingStore struct {
	*memStore
	requests int
}

func (s *rejectingStore) Bulk(ctx context.Context, ops []esindex.Op) ([]esindex.Result, error) {
	s.requests++
	for _, op := range ops {
		if op.ID == "bad-id" {
			return nil, fmt.Errorf("%w: bulk: 400 Bad Request: id too long", esindex.ErrRejected)
		}
	}
	out := make([]esindex.Result, len(ops))
	for i, op := range ops {
		var d struct{ Stock int64 }
		_ = json.Unmarshal(op.Doc, &d)
		if d.Stock == 666 {
			out[i] = esindex.Result{Status: 400, Err: `{"type":"mapper_parsing_exception","reason":"stock"}`}
			continue
		}
		res, err := s.memStore.Bulk(ctx, []esindex.Op{op})
		if err != nil {
			return nil, err
		}
		out[i] = res[0]
	}
	return out, nil
}

// Elasticsearch refusing a document is found per event: the versions
// before it are written, it is dead-lettered (es_rejected) and its
// aggregate quarantined there; a whole refused request is halved until the
// culprit is alone, and the other aggregates are written.
func TestProcessorElasticsearchRejections(t *testing.T) {
	p, st, dlq, m := newTestProcessor()
	rs := &rejectingStore{memStore: st}
	p.store = rs
	bad := `{"name":"n","description":"d","price":1,"stock":666}`
	var batch []*kgo.Record
	// v4 deletes: the document keeps v3's fields, so the folded document
	// is refused as a whole and the culprit must be found per event.
	batch = append(batch, rec("r", products.Created, 1, pl), rec("r", products.Updated, 2, pl), rec("r", products.Updated, 3, bad),
		rec("r", products.Deleted, 4, `{}`), rec("bad-id", products.Created, 1, pl))
	for i := range 20 {
		batch = append(batch, rec(fmt.Sprintf("k%d", i), products.Created, 1, pl))
	}
	if err := p.handle(context.Background(), batch); err != nil {
		t.Fatal(err)
	}
	if st.docs["r"].Version != 2 {
		t.Errorf("r at v%d, want 2 (written up to the refused version)", st.docs["r"].Version)
	}
	for i := range 20 {
		if st.docs[fmt.Sprintf("k%d", i)].Version != 1 {
			t.Fatalf("k%d not written", i)
		}
	}
	if got := dlq.codes()["r"]; !slices.Equal(got, []string{"es_rejected@3", "quarantined_after@4"}) {
		t.Errorf("dead letters of r: %v", got)
	}
	if got := dlq.codes()["bad-id"]; !slices.Equal(got, []string{"es_rejected@1"}) {
		t.Errorf("dead letters of bad-id: %v", got)
	}
	if q := quarantined(p); q["r"].BlockedVersion != 3 || q["r"].Reason != ReasonRejected || q["bad-id"].BlockedVersion != 1 {
		t.Errorf("quarantined %+v", q)
	}
	if rs.requests > 20 {
		t.Errorf("%d bulk requests for one refused request among 22 aggregates, want O(log n)", rs.requests)
	}
	if deadLetters(m, ReasonRejected) != 2 {
		t.Errorf("es_rejected = %v, want 2", deadLetters(m, ReasonRejected))
	}
}

// A document over MaxDocBytes is never sent: document_too_large.
func TestProcessorDocumentTooLarge(t *testing.T) {
	p, st, dlq, _ := newTestProcessor()
	huge := `{"name":"n","description":"` + strings.Repeat("d", esindex.MaxDocBytes) + `","price":1,"stock":1}`
	if err := p.handle(context.Background(), []*kgo.Record{rec("h", products.Created, 1, pl), rec("h", products.Updated, 2, huge)}); err != nil {
		t.Fatal(err)
	}
	if st.docs["h"].Version != 1 {
		t.Errorf("h at v%d, want 1", st.docs["h"].Version)
	}
	if got := dlq.codes()["h"]; !slices.Equal(got, []string{"document_too_large@2"}) {
		t.Errorf("dead letters %v", got)
	}
}

// Transient failures are retried, not dead-lettered: an item 429 and a
// DLQ that is briefly unavailable.
func TestProcessorTransientIsRetried(t *testing.T) {
	p, st, dlq, m := newTestProcessor()
	st.itemErr = 1 // a 500 item
	dlq.failNext = 2
	if err := p.handle(context.Background(), []*kgo.Record{rec("x", products.Created, 1, pl), rec("x", "ProductMelted", 2, `{}`)}); err != nil {
		t.Fatal(err)
	}
	if st.docs["x"].Version != 1 || deadLetters(m, ReasonRejected) != 0 || deadLetters(m, ReasonUnprojectable) != 1 {
		t.Errorf("x at v%d, es_rejected %v, unprojectable %v", st.docs["x"].Version, deadLetters(m, ReasonRejected), deadLetters(m, ReasonUnprojectable))
	}
}

// A version gap parks the aggregate, but only for ParkTimeout: then the
// aggregate is quarantined at the missing version, the parked events are
// held (version_gap) and the partition's commit moves past them, even
// with no new records.
func TestProcessorParkTimeout(t *testing.T) {
	p, _, dlq, m := newTestProcessor()
	now := time.Now()
	p.now = func() time.Time { return now }
	ctx := context.Background()
	gap := rec("g", products.Updated, 3, pl)
	batch := []*kgo.Record{rec("g", products.Created, 1, pl), gap, rec("g", products.Updated, 4, pl)}
	if err := p.handle(ctx, batch); err != nil {
		t.Fatal(err)
	}
	if got := committable(p); got != gap.Offset {
		t.Fatalf("committable %d, want the parked record's %d while the gap is young", got, gap.Offset)
	}
	now = now.Add(p.parkTimeout - time.Second)
	if err := p.handle(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if testutil.ToFloat64(m.Parked.WithLabelValues("products")) != 2 {
		t.Fatal("gap given up before PARK_TIMEOUT")
	}
	now = now.Add(2 * time.Second)
	if err := p.handle(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if got := dlq.codes()["g"]; !slices.Equal(got, []string{"version_gap@3", "version_gap@4"}) {
		t.Errorf("dead letters %v", got)
	}
	if q := quarantined(p)["g"]; q.BlockedVersion != 2 || q.Reason != ReasonVersionGap || q.Offset != -1 {
		t.Errorf("entry %+v, want blocked at the missing v2", q)
	}
	if got := committable(p); got != batch[2].Offset+1 {
		t.Errorf("committable %d, want %d", got, batch[2].Offset+1)
	}
	if testutil.ToFloat64(m.Parked.WithLabelValues("products")) != 0 {
		t.Error("parked gauge not cleared")
	}
	// The missing version arriving late applies (it is not above the
	// blocked version); what was held stays in the DLQ for redrive.
	if err := p.handle(ctx, []*kgo.Record{rec("g", products.Updated, 2, pl), rec("g", products.Updated, 5, pl)}); err != nil {
		t.Fatal(err)
	}
	if got := dlq.codes()["g"]; len(got) != 3 || got[2] != "quarantined_after@5" {
		t.Errorf("dead letters %v, want v5 held", got)
	}
}

// At MaxParked parked events the oldest gaps are quarantined until fewer
// remain; nothing pauses.
func TestProcessorMaxParked(t *testing.T) {
	p, _, dlq, m := newTestProcessor()
	p.maxParked = 3
	now := time.Now()
	p.now = func() time.Time { return now }
	ctx := context.Background()
	for i := range 2 {
		id := fmt.Sprintf("old%d", i)
		if err := p.handle(ctx, []*kgo.Record{rec(id, products.Created, 1, pl), rec(id, products.Updated, 3, pl)}); err != nil {
			t.Fatal(err)
		}
	}
	now = now.Add(time.Second)
	if err := p.handle(ctx, []*kgo.Record{rec("new", products.Created, 1, pl), rec("new", products.Updated, 3, pl)}); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(m.Parked.WithLabelValues("products")); got != 2 {
		t.Errorf("parked %v, want 2 (below the bound of 3)", got)
	}
	q := quarantined(p)
	if _, ok := q["new"]; ok || len(q) != 1 {
		t.Errorf("quarantined %v, want one of the older gaps", q)
	}
	if n := len(dlq.letters); n != 1 || dlq.letters[0].Code != ReasonVersionGap {
		t.Errorf("dead letters %+v", dlq.letters)
	}
}

// The fold's blocking rules, directly.
func TestFoldBlocks(t *testing.T) {
	doc, err := products.Projection.Apply(nil, ev("a", products.Created, 1).env)
	if err != nil {
		t.Fatal(err)
	}
	atV1 := docState{doc: doc, version: 1, lastEventID: products.Created + "-1"}
	f, err := fold(products.Projection, "a", atV1, []pending{ev("a", "ProductMelted", 2), ev("a", products.Updated, 3), ev("a", products.Updated, 4)})
	if err != nil {
		t.Fatal(err)
	}
	if f.blockedAt != 2 || len(f.held) != 2 || len(f.poison) != 1 || len(f.parked) != 0 || f.changed {
		t.Errorf("blocked %d, held %d, poison %d, parked %d, changed %v; want 2, 2, 1, 0, false",
			f.blockedAt, len(f.held), len(f.poison), len(f.parked), f.changed)
	}
	// Poison that is not ahead of the document blocks nothing.
	bad := ev("a", products.Updated, 1)
	bad.bad = &poisonRec{code: ReasonInvalidEnvelope, reason: "x"}
	f, _ = fold(products.Projection, "a", atV1, []pending{bad, ev("a", products.Updated, 2)})
	if f.blockedAt != 0 || len(f.applied) != 1 || len(f.poison) != 1 {
		t.Errorf("stale poison: blocked %d applied %d poison %d", f.blockedAt, len(f.applied), len(f.poison))
	}
}
