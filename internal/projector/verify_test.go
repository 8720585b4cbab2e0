package projector

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"cqrsflow/internal/envelope"
	"cqrsflow/internal/esindex"
	"cqrsflow/internal/projection/products"
)

// memEvents is an in-memory EventStore: rows sorted by (id, version).
type memEvents struct {
	rows        []envelope.Row
	held        map[string][]heldVersion
	unpublished map[string]bool
	reads       int
}

func (m *memEvents) Events(_ context.Context, ids []string, afterID string, afterV int64, limit int) ([]envelope.Row, error) {
	m.reads++
	var out []envelope.Row
	for _, r := range m.rows {
		if r.AggregateID < afterID || (r.AggregateID == afterID && r.Version <= afterV) {
			continue
		}
		if ids != nil && !slices.Contains(ids, r.AggregateID) {
			continue
		}
		if out = append(out, r); len(out) == limit {
			break
		}
	}
	return out, nil
}

func (m *memEvents) RelayHeld(_ context.Context, ids []string) (map[string][]heldVersion, error) {
	out := map[string][]heldVersion{}
	for _, id := range ids {
		if h, ok := m.held[id]; ok {
			out[id] = h
		}
	}
	return out, nil
}

func (m *memEvents) Unpublished(_ context.Context, ids []string) (map[string]bool, error) {
	out := map[string]bool{}
	for _, id := range ids {
		out[id] = m.unpublished[id]
	}
	return out, nil
}

func (m *memEvents) Existing(_ context.Context, ids []string) (map[string]bool, error) {
	out := map[string]bool{}
	for _, r := range m.rows {
		if slices.Contains(ids, r.AggregateID) {
			out[r.AggregateID] = true
		}
	}
	return out, nil
}

func (m *memEvents) Sample(ctx context.Context, n int, _ time.Time, chunk int, fn func([]string) error) error {
	ids, _ := m.IDs(ctx, "", time.Time{}, n)
	for len(ids) > 0 {
		k := min(chunk, len(ids))
		if err := fn(ids[:k]); err != nil {
			return err
		}
		ids = ids[k:]
	}
	return nil
}

func (m *memEvents) IDs(_ context.Context, after string, _ time.Time, limit int) ([]string, error) {
	var out []string
	for _, r := range m.rows {
		if r.AggregateID > after && (len(out) == 0 || out[len(out)-1] != r.AggregateID) {
			if len(out) == limit {
				break
			}
			out = append(out, r.AggregateID)
		}
	}
	return out, nil
}

// add appends an event of aggregate id (the next version) recorded at at.
func (m *memEvents) add(id, typ, payload string, at time.Time) envelope.Row {
	v := int64(1)
	for _, r := range m.rows {
		if r.AggregateID == id {
			v = max(v, r.Version+1)
		}
	}
	r := envelope.Row{AggregateType: "product", AggregateID: id, GlobalPosition: int64(len(m.rows) + 1),
		EventID: fmt.Sprintf("ev-%s-%d", id, v), EventType: typ, SchemaVersion: 1, Version: v,
		Payload: []byte(payload), Metadata: []byte(`{"correlation_id": "c"}`), OccurredAt: at.Add(-time.Millisecond), RecordedAt: at}
	m.rows = append(m.rows, r)
	slices.SortFunc(m.rows, func(a, b envelope.Row) int {
		if c := strings.Compare(a.AggregateID, b.AggregateID); c != 0 {
			return c
		}
		return int(a.Version - b.Version)
	})
	return r
}

// project runs rows through the processor as the relay publishes them.
func project(t *testing.T, p *processor, rows ...envelope.Row) {
	t.Helper()
	var recs []*kgo.Record
	for i := range rows {
		b, err := envelope.AppendJSON(nil, &rows[i])
		if err != nil {
			t.Fatal(err)
		}
		offset++
		recs = append(recs, &kgo.Record{Topic: "t", Offset: offset, Key: []byte(rows[i].AggregateID), Value: b})
	}
	if err := p.handle(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
}

func newTestVerifier(ev EventStore, st Store, cutoff time.Time, pageRows int) *verifier {
	return &verifier{proj: products.Projection, events: ev, store: st, pageRows: pageRows,
		cutoff: func(context.Context) (time.Time, error) { return cutoff, nil }}
}

func runChecks(t *testing.T, v *verifier, ids []string) map[string]Check {
	t.Helper()
	out := map[string]Check{}
	if _, err := v.check(context.Background(), ids, func(c Check) error {
		if _, dup := out[c.AggregateID]; dup {
			t.Errorf("%s checked twice", c.AggregateID)
		}
		out[c.AggregateID] = c
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func productPayload(name string, price float64) string {
	return fmt.Sprintf(`{"name": %q, "description": "d", "price": %v, "stock": 3}`, name, price)
}

// The verifier folds what the processor folded: after projecting a store,
// every aggregate verifies equal, across page boundaries (pages of 3 rows,
// aggregates of up to 5 events), holding at most a page of rows.
func TestVerifyAgreesWithTheProcessor(t *testing.T) {
	p, st, _, _ := newTestProcessor()
	ev := &memEvents{}
	old := time.Now().Add(-time.Hour)
	var rows []envelope.Row
	for i := range 7 {
		id := fmt.Sprintf("p%02d", i)
		rows = append(rows, ev.add(id, products.Created, productPayload(id, 1.5), old))
		for j := range i % 5 {
			rows = append(rows, ev.add(id, products.Updated, productPayload(id, float64(j)+0.25), old))
		}
		if i == 3 {
			rows = append(rows, ev.add(id, products.Deleted, `{"reason": "x"}`, old))
		}
	}
	project(t, p, rows...)
	v := newTestVerifier(ev, st, time.Now(), 3)
	got := runChecks(t, v, nil)
	if len(got) != 7 {
		t.Fatalf("%d aggregates checked, want 7", len(got))
	}
	for id, c := range got {
		if c.Result != ResultEqual {
			t.Errorf("%s: %s %+v", id, c.Result, c)
		}
	}
	if v.stats.MaxRowsHeld > 3 || v.stats.Events != int64(len(rows)) {
		t.Errorf("stats %+v: want at most 3 rows held and %d events read", v.stats, len(rows))
	}
}

// Each corruption of a document is classified, with the differing fields.
func TestVerifyClassifiesDrift(t *testing.T) {
	p, st, _, _ := newTestProcessor()
	ev := &memEvents{}
	old := time.Now().Add(-time.Hour)
	var rows []envelope.Row
	for _, id := range []string{"changed", "older", "gone", "fine", "young", "outbox"} {
		rows = append(rows, ev.add(id, products.Created, productPayload(id, 2), old))
		rows = append(rows, ev.add(id, products.Updated, productPayload(id, 3), old))
	}
	project(t, p, rows...)
	src := map[string]any{}
	_ = json.Unmarshal(st.docs["changed"].Source, &src)
	src["price"] = 99.5
	st.docs["changed"] = esindex.Hit{Version: 2, Source: jsonOf(src)}
	first := append([]byte(nil), st.docs["older"].Source...)
	st.docs["older"] = esindex.Hit{Version: 1, Source: first} // overwritten below with v1's content
	delete(st.docs, "gone")
	// young and outbox: a third event the projection has not applied.
	ev.add("young", products.Updated, productPayload("young", 4), time.Now())
	ev.add("outbox", products.Updated, productPayload("outbox", 4), old)
	ev.unpublished = map[string]bool{"outbox": true}

	v := newTestVerifier(ev, st, time.Now().Add(-time.Minute), 4)
	got := runChecks(t, v, nil)
	want := map[string]string{"changed": ResultDifferent, "older": ResultStale, "gone": ResultMissing, "fine": ResultEqual,
		"young": ResultInFlight, "outbox": ResultInFlight}
	for id, res := range want {
		if got[id].Result != res {
			t.Errorf("%s: %s, want %s (%+v)", id, got[id].Result, res, got[id])
		}
	}
	if d := got["changed"].Diffs; len(d) != 1 || d[0].Field != "price" || string(d[0].Expected) != "3" || string(d[0].Actual) != "99.5" {
		t.Errorf("changed: diffs %+v, want price 3 → 99.5", d)
	}
	if c := got["older"]; c.DocumentVersion != 1 || c.ExpectedVersion != 2 || c.Diffs[0].Field != "_version" {
		t.Errorf("older: %+v", c)
	}
	// A document without events is unexpected.
	var out []Check
	if err := v.unexpected(context.Background(), []esindex.DocRef{{ID: "extra", Version: 4}, {ID: "fine", Version: 2}},
		func(c Check) error { out = append(out, c); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(out) != 1 || out[0].AggregateID != "extra" || out[0].Result != ResultUnexpected {
		t.Errorf("unexpected: %+v", out)
	}
}

// A difference seen once, then gone when read again (the projector wrote
// between the reads), is not drift.
func TestVerifyConfirmsDifferences(t *testing.T) {
	p, st, _, _ := newTestProcessor()
	ev := &memEvents{}
	old := time.Now().Add(-time.Hour)
	project(t, p, ev.add("a", products.Created, productPayload("a", 1), old))
	late := ev.add("a", products.Updated, productPayload("a", 2), old)
	racing := &writeBetweenReads{memStore: st, before: func() { project(t, p, late) }}
	got := runChecks(t, newTestVerifier(ev, racing, time.Now(), 10), nil)
	if got["a"].Result != ResultEqual {
		t.Fatalf("a: %+v, want equal after the re-check", got["a"])
	}
	if racing.mgets < 2 {
		t.Fatalf("read %d times, want a second read", racing.mgets)
	}
}

// writeBetweenReads runs before once, after the first MGet.
type writeBetweenReads struct {
	*memStore
	before func()
	mgets  int
}

func (s *writeBetweenReads) MGet(ctx context.Context, ids []string) (map[string]esindex.Hit, error) {
	s.mgets++
	h, err := s.memStore.MGet(ctx, ids)
	if s.mgets == 1 {
		s.before()
	}
	return h, err
}

// Held versions are explained, not drift: an event the projection refuses
// blocks the aggregate (quarantined) unless the document is past it
// (skipped); so does a version the relay holds, and a quarantine entry.
func TestVerifyExplainsHeldVersions(t *testing.T) {
	p, st, _, _ := newTestProcessor()
	ev := &memEvents{held: map[string][]heldVersion{}}
	old := time.Now().Add(-time.Hour)
	var rows []envelope.Row
	for _, id := range []string{"poison", "skipped", "relay", "quar"} {
		rows = append(rows, ev.add(id, products.Created, productPayload(id, 1), old))
	}
	rows = append(rows, ev.add("poison", "ProductMelted", `{}`, old), ev.add("poison", products.Updated, productPayload("x", 5), old))
	rows = append(rows, ev.add("skipped", "ProductMelted", `{}`, old))
	project(t, p, rows...)
	// The operator skips v2 of "skipped" (dlq skip writes the document
	// and releases the aggregate); v3 arrives after.
	doc, err := skippedDoc("skipped", 2, "ev-skipped-2", st.docs["skipped"], time.Now())
	if err != nil {
		t.Fatal(err)
	}
	st.docs["skipped"] = esindex.Hit{Version: 2, Source: doc}
	p.quar.(*quarantineSet).remove("skipped", 1<<62)
	p.cache.evict("skipped")
	project(t, p, ev.add("skipped", products.Updated, productPayload("s", 7), old))
	// The relay holds v2 of "relay"; "quar" is quarantined at v2 (say,
	// Elasticsearch refused its document), so its v2 never applied.
	ev.add("relay", products.Updated, productPayload("r", 5), old)
	ev.held["relay"] = []heldVersion{{version: 2, kind: holdUnapplied, why: "the relay holds it"}}
	ev.add("quar", products.Updated, productPayload("q", 5), old)
	v := newTestVerifier(ev, st, time.Now(), 2)
	v.holds = func(ids []string) map[string][]heldVersion {
		if slices.Contains(ids, "quar") {
			return map[string][]heldVersion{"quar": {{version: 2, kind: holdBlocked, why: "quarantined (es_rejected)"}}}
		}
		return nil
	}
	got := runChecks(t, v, nil)
	want := map[string]string{"poison": ResultQuarantined, "skipped": ResultSkipped, "relay": ResultQuarantined, "quar": ResultQuarantined}
	for id, res := range want {
		if got[id].Result != res {
			t.Errorf("%s: %s, want %s (%+v)", id, got[id].Result, res, got[id])
		}
	}
	// A held aggregate whose document is older than the held version is
	// still drift.
	st.docs["poison"] = esindex.Hit{}
	delete(st.docs, "poison")
	if c := runChecks(t, v, []string{"poison"})["poison"]; c.Result != ResultMissing {
		t.Errorf("poison without a document: %+v", c)
	}
}

// Repair writes the expected documents through external versions: stale,
// missing and different documents are fixed, a newer one is kept, an
// unexpected one is deleted only when asked.
func TestRepair(t *testing.T) {
	p, st, _, _ := newTestProcessor()
	ev := &memEvents{}
	old := time.Now().Add(-time.Hour)
	var rows []envelope.Row
	for _, id := range []string{"changed", "older", "gone"} {
		rows = append(rows, ev.add(id, products.Created, productPayload(id, 2), old), ev.add(id, products.Updated, productPayload(id, 3), old))
	}
	project(t, p, rows...)
	want := map[string]esindex.Hit{}
	for id, h := range st.docs {
		want[id] = h
	}
	src := map[string]any{}
	_ = json.Unmarshal(st.docs["changed"].Source, &src)
	src["name"] = "tampered"
	st.docs["changed"] = esindex.Hit{Version: 2, Source: jsonOf(src)}
	st.docs["older"] = esindex.Hit{Version: 1, Source: st.docs["older"].Source}
	delete(st.docs, "gone")
	v := newTestVerifier(ev, st, time.Now(), 100)
	stats := &RepairStats{}
	fix := &repairer{store: st, stats: stats, maxItems: 10}
	for _, c := range runChecks(t, v, nil) {
		if IsDrift(c.Result) {
			if err := fix.add(context.Background(), c); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := fix.add(context.Background(), Check{AggregateID: "extra", Result: ResultUnexpected}); err != nil {
		t.Fatal(err)
	}
	if err := fix.flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if stats.Written != 3 || stats.Left != 1 || stats.Deleted != 0 {
		t.Errorf("repair %+v: want 3 written, the unexpected one left", stats)
	}
	for id, h := range want {
		if got := st.docs[id]; got.Version != h.Version || string(got.Source) != string(h.Source) {
			t.Errorf("%s after repair: v%d %s, want v%d %s", id, got.Version, got.Source, h.Version, h.Source)
		}
	}
	// The projection moved on meanwhile: the repair keeps the newer one.
	c := Check{AggregateID: "older", Result: ResultStale, ExpectedVersion: 2, DocumentVersion: 1, expected: []byte(`{}`)}
	st.docs["older"] = esindex.Hit{Version: 3, Source: []byte(`{"v":3}`)}
	stats = &RepairStats{}
	fix = &repairer{store: st, stats: stats, maxItems: 10}
	if err := fix.add(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	if err := fix.flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if stats.Kept != 1 || st.docs["older"].Version != 3 {
		t.Errorf("repair over a newer document: %+v, document v%d", stats, st.docs["older"].Version)
	}
}
