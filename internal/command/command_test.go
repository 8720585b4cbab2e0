package command

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"cqrsflow/internal/domain"
	"cqrsflow/internal/envelope"
	"cqrsflow/internal/eventschema"
	"cqrsflow/internal/eventstore"
)

// fakeRepo is a Repository from a function field; it records every command.
type fakeRepo struct {
	execute func(ctx context.Context, cmd eventstore.Command) (eventstore.Result, error)
	calls   []eventstore.Command
}

func (r *fakeRepo) Execute(ctx context.Context, cmd eventstore.Command) (eventstore.Result, error) {
	r.calls = append(r.calls, cmd)
	return r.execute(ctx, cmd)
}

// last is the one command the repository got; appended are the events its
// Decide returned (nil when Decide failed or was not reached).
func (r *fakeRepo) last(t *testing.T) eventstore.Command {
	t.Helper()
	if len(r.calls) != 1 {
		t.Fatalf("repository called %d times, want once", len(r.calls))
	}
	return r.calls[0]
}

// storeLike runs commands the way eventstore.Store does, on one aggregate
// whose stored history is history: version checks, Decide, the new
// version, and the response stored with an idempotency key. appended
// receives what Decide returned.
func storeLike(history []eventstore.Event, appended *[]eventstore.NewEvent) *fakeRepo {
	return &fakeRepo{execute: func(_ context.Context, cmd eventstore.Command) (eventstore.Result, error) {
		current := int64(len(history))
		switch {
		case cmd.ExpectedVersion > 0 && current == 0:
			return eventstore.Result{}, eventstore.ErrNotFound
		case cmd.ExpectedVersion >= 0 && current != cmd.ExpectedVersion:
			return eventstore.Result{}, &eventstore.ConflictError{AggregateType: cmd.AggregateType,
				AggregateID: cmd.AggregateID, Expected: cmd.ExpectedVersion, Current: current}
		}
		var h []eventstore.Event
		if cmd.ExpectedVersion != eventstore.NoAggregate {
			h = history
		}
		evs, err := cmd.Decide(h)
		if err != nil {
			return eventstore.Result{}, err
		}
		if appended != nil {
			*appended = evs
		}
		res := eventstore.Result{Version: current + int64(len(evs))}
		for i, e := range evs {
			res.Appended = append(res.Appended, eventstore.Appended{Type: e.Type, Version: current + int64(i) + 1})
		}
		if cmd.Idempotency != nil {
			res.Status, res.Body = cmd.Idempotency.Response(res)
		}
		return res, nil
	}}
}

// history encodes decided events as the store would return them.
func history(t *testing.T, evs ...domain.Event) []eventstore.Event {
	t.Helper()
	out := make([]eventstore.Event, len(evs))
	for i, e := range evs {
		b, err := json.Marshal(e.Payload)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = eventstore.Event{Version: int64(i + 1), Type: e.Type, SchemaVersion: e.SchemaVersion, Payload: b}
	}
	return out
}

type fixture struct {
	h   *Handlers
	reg *prometheus.Registry
}

func newFixture(t testing.TB, repo Repository) fixture {
	t.Helper()
	schemas, err := eventschema.Load()
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	h, err := New(repo, schemas, reg)
	if err != nil {
		t.Fatal(err)
	}
	return fixture{h, reg}
}

// counter reads a counter of the fixture's registry (0 when absent).
func (f fixture) counter(t *testing.T, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := f.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			var vals []string
			for _, l := range m.GetLabel() {
				vals = append(vals, l.GetValue())
			}
			if strings.Join(vals, ",") == strings.Join(labels, ",") {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

var req = Request{Principal: "alice", RequestID: "req-1", Status: 200,
	Fingerprint: Fingerprint{Method: "POST", Route: "/v1/x", Body: []byte(`{}`)}}

func TestNewNamesEveryMissingDependency(t *testing.T) {
	_, err := New(nil, nil, nil)
	for _, want := range []string{"repository", "schemas", "Registerer"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("New(nil, nil, nil) = %v, want it to name %s", err, want)
		}
	}
	schemas, err := eventschema.Load()
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	if _, err := New(&fakeRepo{}, schemas, reg); err != nil {
		t.Fatal(err)
	}
	if _, err := New(&fakeRepo{}, schemas, reg); err == nil {
		t.Error("registering the metrics twice on one registry must fail")
	}
}

// The metadata every appended event carries comes from Request; the
// correlation id defaults to the request id.
func TestMetadata(t *testing.T) {
	for _, tc := range []struct {
		corr, want string
	}{{"", "req-1"}, {"flow-9", "flow-9"}} {
		repo := storeLike(nil, nil)
		f := newFixture(t, repo)
		r := req
		r.CorrelationID, r.IdempotencyKey = tc.corr, "key-1"
		if _, err := f.h.CreateOrder.Handle(context.Background(), CreateOrder{Order: validOrder, Request: r}); err != nil {
			t.Fatal(err)
		}
		want := envelope.Metadata{CorrelationID: tc.want, IdempotencyKey: "key-1", RequestID: "req-1", Principal: "alice"}
		if got := repo.last(t).Metadata; got != want {
			t.Errorf("metadata %+v, want %+v", got, want)
		}
	}
}

func TestExpectedVersion(t *testing.T) {
	for _, tc := range []struct {
		in, want int64
	}{{0, eventstore.AnyVersion}, {1, 1}, {42, 42}} {
		got, err := expect(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("expect(%d) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
	// A negative version is refused before the store is asked: -1 would
	// otherwise silently mean "any".
	repo := storeLike(nil, nil)
	f := newFixture(t, repo)
	ctx := context.Background()
	for name, run := range map[string]func() error{
		"update": func() error {
			_, err := f.h.UpdateProduct.Handle(ctx, UpdateProduct{ID: "p", ExpectedVersion: -1})
			return err
		},
		"delete": func() error {
			_, err := f.h.DeleteProduct.Handle(ctx, DeleteProduct{ID: "p", ExpectedVersion: -1})
			return err
		},
		"pay":  func() error { _, err := f.h.PayOrder.Handle(ctx, PayOrder{ID: "o", ExpectedVersion: -1}); return err },
		"ship": func() error { _, err := f.h.ShipOrder.Handle(ctx, ShipOrder{ID: "o", ExpectedVersion: -2}); return err },
		"cancel": func() error {
			_, err := f.h.CancelOrder.Handle(ctx, CancelOrder{ID: "o", ExpectedVersion: -1})
			return err
		},
	} {
		if err := run(); err == nil || !strings.Contains(err.Error(), "expected version") {
			t.Errorf("%s with a negative expected version: %v", name, err)
		}
	}
	if len(repo.calls) != 0 {
		t.Errorf("the repository was called %d times", len(repo.calls))
	}
}

// The hash of a fingerprint is stable, covers every part, and is the
// encoding the stored keys were written with.
func TestFingerprintHash(t *testing.T) {
	base := Fingerprint{Method: "POST", Route: "/v1/orders/:id/pay", ID: "0193a3f0-1c2d-7e4f-8a9b-0c1d2e3f4a5b",
		IfMatch: `"2"`, Body: []byte(`{"payment_reference":"r"}`)}
	same := base
	same.Body = append([]byte(nil), base.Body...)
	if string(base.Hash()) != string(same.Hash()) {
		t.Fatal("the same request hashes differently")
	}
	want := sha256.Sum256([]byte("POST\x00/v1/orders/:id/pay\x00" + base.ID + "\x00\"2\"\x00" + `{"payment_reference":"r"}`))
	if string(base.Hash()) != string(want[:]) {
		t.Fatal("the hash encoding changed: stored idempotency keys would no longer match their retries")
	}
	for name, mod := range map[string]func(*Fingerprint){
		"method":   func(f *Fingerprint) { f.Method = "PUT" },
		"route":    func(f *Fingerprint) { f.Route = "/v1/orders/:id/ship" },
		"id":       func(f *Fingerprint) { f.ID = "0193a3f0-1c2d-7e4f-8a9b-0c1d2e3f4a5c" },
		"If-Match": func(f *Fingerprint) { f.IfMatch = `"3"` },
		"no If-Match": func(f *Fingerprint) {
			f.IfMatch = ""
		},
		"body":           func(f *Fingerprint) { f.Body = []byte(`{"payment_reference":"s"}`) },
		"body spacing":   func(f *Fingerprint) { f.Body = []byte(`{"payment_reference": "r"}`) },
		"parts shifted":  func(f *Fingerprint) { f.Method, f.Route = "POST/v1", "/orders/:id/pay" },
		"body into part": func(f *Fingerprint) { f.IfMatch, f.Body = `"2"{`, []byte(`"payment_reference":"r"}`) },
	} {
		f := base
		mod(&f)
		if string(f.Hash()) == string(base.Hash()) {
			t.Errorf("%s changed but the hash did not", name)
		}
	}
}

// With a key, the command carries the request hash and the answer to
// store, which is exactly the answer the caller gets; without one, no
// idempotency record is written.
func TestIdempotencyRecord(t *testing.T) {
	repo := storeLike(nil, nil)
	f := newFixture(t, repo)
	r := req
	r.Status = 201
	if _, err := f.h.CreateProduct.Handle(context.Background(), CreateProduct{Fields: validProduct, Request: r}); err != nil {
		t.Fatal(err)
	}
	if repo.last(t).Idempotency != nil {
		t.Fatal("an idempotency record without a key")
	}

	repo = storeLike(nil, nil)
	f = newFixture(t, repo)
	r.IdempotencyKey = "create-1"
	res, err := f.h.CreateProduct.Handle(context.Background(), CreateProduct{Fields: validProduct, Request: r})
	if err != nil {
		t.Fatal(err)
	}
	idem := repo.last(t).Idempotency
	if idem == nil || idem.Key != "create-1" || idem.Principal != "alice" || string(idem.RequestHash) != string(r.Fingerprint.Hash()) {
		t.Fatalf("idempotency record %+v", idem)
	}
	status, body := idem.Response(eventstore.Result{Version: 1})
	if status != 201 || string(body) != string(res.Body) || res.Status != 201 {
		t.Fatalf("stored answer %d %s, answer %d %s", status, body, res.Status, res.Body)
	}
	want := fmt.Sprintf(`{"id":%q,"version":1}`, res.ID)
	if string(res.Body) != want {
		t.Fatalf("answer %s, want %s", res.Body, want)
	}
}

// A replay answers what the repository stored and counts nothing.
func TestReplay(t *testing.T) {
	stored := []byte(`{"id":"first","version":3}`)
	repo := &fakeRepo{execute: func(context.Context, eventstore.Command) (eventstore.Result, error) {
		return eventstore.Result{Replayed: true, Status: 202, Body: stored}, nil
	}}
	f := newFixture(t, repo)
	r := req
	r.IdempotencyKey = "k"
	res, err := f.h.CreateOrder.Handle(context.Background(), CreateOrder{Order: validOrder, Request: r})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Replayed || res.Status != 202 || string(res.Body) != string(stored) || res.ID != "" || res.Version != 0 {
		t.Fatalf("replay result %+v", res)
	}
	if n := testutil.CollectAndCount(f.reg, "cqrsflow_events_appended_total"); n != 0 {
		t.Errorf("a replay counted %d appended series", n)
	}
}

// every runs each handler once with a valid command; the key is the
// aggregate type it writes.
func every(h *Handlers) map[string]func() (Result, error) {
	ctx := context.Background()
	return map[string]func() (Result, error){
		"product/create": func() (Result, error) {
			return h.CreateProduct.Handle(ctx, CreateProduct{Fields: validProduct, Request: req})
		},
		"product/update": func() (Result, error) {
			return h.UpdateProduct.Handle(ctx, UpdateProduct{ID: "p", ExpectedVersion: 1, Fields: validProduct, Request: req})
		},
		"product/delete": func() (Result, error) {
			return h.DeleteProduct.Handle(ctx, DeleteProduct{ID: "p", ExpectedVersion: 1, Request: req})
		},
		"order/create": func() (Result, error) { return h.CreateOrder.Handle(ctx, CreateOrder{Order: validOrder, Request: req}) },
		"order/pay": func() (Result, error) {
			return h.PayOrder.Handle(ctx, PayOrder{ID: "o", ExpectedVersion: 1, Request: req})
		},
		"order/ship": func() (Result, error) {
			return h.ShipOrder.Handle(ctx, ShipOrder{ID: "o", ExpectedVersion: 1, Request: req})
		},
		"order/cancel": func() (Result, error) {
			return h.CancelOrder.Handle(ctx, CancelOrder{ID: "o", ExpectedVersion: 1, Request: req})
		},
	}
}

// Errors of the repository reach the caller unchanged, from every
// handler; a version conflict is counted per aggregate type.
func TestRepositoryErrorsPassThrough(t *testing.T) {
	conflict := &eventstore.ConflictError{AggregateType: "x", AggregateID: "id", Expected: 1, Current: 2}
	for _, want := range []error{conflict, eventstore.ErrNotFound, eventstore.ErrIdempotencyMismatch, context.DeadlineExceeded} {
		repo := &fakeRepo{execute: func(context.Context, eventstore.Command) (eventstore.Result, error) {
			return eventstore.Result{}, want
		}}
		f := newFixture(t, repo)
		for name, run := range every(f.h) {
			if res, err := run(); err != want || res.ID != "" || res.Version != 0 || res.Body != nil {
				t.Errorf("%s: %+v, %v; want %v unchanged", name, res, err, want)
			}
		}
		wantConflicts := map[string]float64{"product": 0, "order": 0}
		if want == conflict {
			wantConflicts = map[string]float64{"product": 3, "order": 4}
		}
		for typ, n := range wantConflicts {
			if got := f.counter(t, "cqrsflow_command_conflicts_total", typ); got != n {
				t.Errorf("%v: %v %s conflicts counted, want %v", want, got, typ, n)
			}
		}
	}
}

// A stored event the fold cannot read is an internal error, not a rule.
func TestCorruptHistory(t *testing.T) {
	bad := []eventstore.Event{{Version: 1, Type: "ProductCreated", SchemaVersion: 1, Payload: []byte(`{"name":`)}}
	f := newFixture(t, storeLike(bad, nil))
	_, err := f.h.UpdateProduct.Handle(context.Background(), UpdateProduct{ID: "p", Fields: validProduct, Request: req})
	if err == nil || !strings.Contains(err.Error(), "folding product") || errors.Is(err, domain.ErrRule) {
		t.Errorf("corrupt product history: %v", err)
	}
	bad = []eventstore.Event{{Version: 1, Type: "OrderVanished", SchemaVersion: 1, Payload: []byte(`{}`)}}
	f = newFixture(t, storeLike(bad, nil))
	_, err = f.h.PayOrder.Handle(context.Background(), PayOrder{ID: "o", Request: req})
	if err == nil || !strings.Contains(err.Error(), "folding order") || errors.Is(err, domain.ErrRule) {
		t.Errorf("corrupt order history: %v", err)
	}
}

func isUUID(s string) bool {
	u, err := uuid.Parse(s)
	return err == nil && u.String() == s
}

// answer writes what fmt wrote with {"id":%q,"version":%d}.
func TestAnswerIsTheFormattedBody(t *testing.T) {
	for _, id := range []string{"0193a3f0-1c2d-7e4f-8a9b-0c1d2e3f4a5b", "", `q"b\s`, "é\x01\xff", "<&>"} {
		for _, v := range []int64{0, 1, -3, 1 << 62} {
			if got, want := string(answer(id, v)), fmt.Sprintf(`{"id":%q,"version":%d}`, id, v); got != want {
				t.Errorf("answer(%q, %d) = %s, want %s", id, v, got, want)
			}
		}
	}
}
