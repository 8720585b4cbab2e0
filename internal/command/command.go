// Package command is the application layer of the write side: one handler
// per command (CreateProduct, UpdateProduct, DeleteProduct, CreateOrder,
// PayOrder, ShipOrder, CancelOrder), each taking a typed command and
// returning a typed Result. A port (the HTTP API in internal/httpapi)
// decodes a request into a command, calls Handle and maps the error; it
// takes no decision itself.
//
// A handler owns everything between the decoded request and the event
// store:
//
//   - the aggregate id of a create and the expected version of the rest;
//   - folding the aggregate's history (product.Fold, order.Fold) and the
//     domain decision (Create, Update, Pay, …);
//   - encoding the decided payloads and validating them against their JSON
//     Schemas (internal/eventschema), so nothing the schemas reject is
//     appended, whatever the domain let through;
//   - the event metadata (principal, request and correlation ids, the
//     idempotency key);
//   - the idempotency record: the request hash (see Fingerprint) and the
//     answer stored with the key, which a retry gets back byte for byte.
//
// Commands carry values the port already validated field by field
// (product.Validate, order.Validate): a port reports malformed JSON and
// broken field rules together in one answer, which it can only do before
// anything runs.
//
// Every handler ends in one call of Repository.Execute with a
// self-contained eventstore.Command: the aggregate, the expected version, a
// Decide function that needs nothing but the history it is handed, the
// metadata and the idempotency record. *eventstore.Store runs it as one
// PostgreSQL transaction; *eventstore.Batcher (group commit, the api's
// default) runs the commands that arrive together in one transaction,
// each with its own outcome. Either stands behind the interface without
// any change here, because no command refers back to its caller while it
// runs: Decide may run on another goroutine, after other commands' Decide
// on the same aggregate, and must need nothing but the history it is
// handed.
package command

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"cqrsflow/internal/domain"
	"cqrsflow/internal/envelope"
	"cqrsflow/internal/eventschema"
	"cqrsflow/internal/eventstore"
	"cqrsflow/internal/obs"
)

// Repository is what the handlers need from the event store: run one
// command on one aggregate — lock it, hand its history to Decide, append
// what Decide returns with its outbox rows and idempotency record — all or
// nothing. *eventstore.Store and *eventstore.Batcher implement it.
type Repository interface {
	Execute(ctx context.Context, cmd eventstore.Command) (eventstore.Result, error)
}

// Request is what every command carries besides its own fields: who sent
// it, how to trace it, and what makes a retry recognisable.
type Request struct {
	Principal string
	RequestID string
	// CorrelationID groups the events of one business flow; empty means
	// the request starts one, and RequestID is used.
	CorrelationID string
	// IdempotencyKey, when set, makes the command idempotent per
	// principal: the first successful answer is stored with the events,
	// and a retry with the same key and Fingerprint gets it back while
	// nothing is appended.
	IdempotencyKey string
	// Fingerprint identifies the request for IdempotencyKey.
	Fingerprint Fingerprint
	// Status is the port's status of a successful answer (HTTP 201, 200
	// or 202). It is stored with the idempotency key, so a replay answers
	// with the status the first request got.
	Status int
	// Users, when not empty, are the only users the principal acts for:
	// it may create orders only for them (else ErrUserNotAllowed) and
	// change only their orders (else ErrNotOwner). Empty: any user (a
	// service or an admin).
	Users []string
}

// Errors of principals bound to users (Request.Users).
var (
	// ErrUserNotAllowed: an order for a user the principal does not act
	// for (HTTP 403).
	ErrUserNotAllowed = errors.New("the principal may not act for this user")
	// ErrNotOwner: the order belongs to a user the principal does not act
	// for. Ports answer it like a missing order (HTTP 404), so ids of
	// other users' orders reveal nothing, not even that they exist.
	ErrNotOwner = errors.New("the order belongs to another user")
)

// actsFor reports whether a principal restricted to users may act for user.
func actsFor(users []string, user string) bool {
	return len(users) == 0 || slices.Contains(users, user)
}

// Fingerprint is the request as the client sent it. Its hash is stored
// with the idempotency key; the same key with another fingerprint is
// refused (eventstore.ErrIdempotencyMismatch) instead of answering a
// request that was not made.
type Fingerprint struct {
	Method  string // e.g. POST
	Route   string // the route template: the action is part of the request
	ID      string // the aggregate id as sent, "" for a create
	IfMatch string // the precondition as sent
	Body    []byte // as sent, byte for byte
}

// Hash is SHA-256 over the parts, each followed by a NUL, then the body.
// Stored keys were hashed this way, so the encoding must not change: a
// retry across a deploy would otherwise be refused.
func (f Fingerprint) Hash() []byte {
	h := sha256.New()
	for _, part := range []string{f.Method, f.Route, f.ID, f.IfMatch} {
		h.Write([]byte(part))
		h.Write([]byte{0})
	}
	h.Write(f.Body)
	return h.Sum(nil)
}

// Result is the answer to a command.
type Result struct {
	// ID and Version are the aggregate and its version after the command;
	// both are unset on a replay (the first answer is in Body).
	ID      string
	Version int64
	// Replayed is true when the idempotency key had been used with the
	// same request: nothing was appended.
	Replayed bool
	// Status and Body are the answer: Request.Status and
	// {"id":"…","version":N}, or on a replay what the first request got.
	Status int
	Body   []byte
}

// Handlers are the command handlers, one per command.
type Handlers struct {
	CreateProduct CreateProductHandler
	UpdateProduct UpdateProductHandler
	DeleteProduct DeleteProductHandler
	CreateOrder   CreateOrderHandler
	PayOrder      PayOrderHandler
	ShipOrder     ShipOrderHandler
	CancelOrder   CancelOrderHandler
}

// New returns the handlers running commands on repo, with the payload
// schemas of schemas, and registers their metrics on reg.
func New(repo Repository, schemas *eventschema.Registry, reg prometheus.Registerer) (*Handlers, error) {
	var errs []error
	if repo == nil {
		errs = append(errs, errors.New("command: a repository is required"))
	}
	if schemas == nil {
		errs = append(errs, errors.New("command: event schemas are required"))
	}
	if reg == nil {
		errs = append(errs, errors.New("command: a prometheus.Registerer is required"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	x := &executor{repo: repo, schemas: schemas, m: m}
	return &Handlers{
		CreateProduct: CreateProductHandler{x}, UpdateProduct: UpdateProductHandler{x}, DeleteProduct: DeleteProductHandler{x},
		CreateOrder: CreateOrderHandler{x}, PayOrder: PayOrderHandler{x}, ShipOrder: ShipOrderHandler{x},
		CancelOrder: CancelOrderHandler{x},
	}, nil
}

type metrics struct {
	appended  *prometheus.CounterVec
	conflicts *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		appended: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: obs.Namespace, Name: "events_appended_total",
			Help: "Events appended to the event store (committed).",
		}, []string{"aggregate_type", "event_type"}),
		conflicts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: obs.Namespace, Name: "command_conflicts_total",
			Help: "Commands rejected because the aggregate was not at the expected version.",
		}, []string{"aggregate_type"}),
	}
	for _, c := range []prometheus.Collector{m.appended, m.conflicts} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// executor is what every handler shares: it turns a plan into an
// eventstore.Command, runs it and shapes the Result.
type executor struct {
	repo    Repository
	schemas *eventschema.Registry
	m       *metrics
}

// plan is one command ready to run: the aggregate, the expected version
// (eventstore.NoAggregate, eventstore.AnyVersion or >= 1) and the decision
// over the aggregate's history.
type plan struct {
	aggType  string
	id       string
	expected int64
	decide   func(history []eventstore.Event) ([]domain.Event, error)
}

// expect turns a command's ExpectedVersion (0: none) into the store's.
func expect(v int64) (int64, error) {
	switch {
	case v == 0:
		return eventstore.AnyVersion, nil
	case v < 0:
		return 0, fmt.Errorf("command: expected version %d: must be >= 1, or 0 for none", v)
	}
	return v, nil
}

func (x *executor) run(ctx context.Context, req Request, p plan) (Result, error) {
	corr := req.CorrelationID
	if corr == "" {
		corr = req.RequestID
	}
	cmd := eventstore.Command{
		AggregateType:   p.aggType,
		AggregateID:     p.id,
		ExpectedVersion: p.expected,
		Metadata: envelope.Metadata{CorrelationID: corr, IdempotencyKey: req.IdempotencyKey,
			RequestID: req.RequestID, Principal: req.Principal},
		Decide: func(history []eventstore.Event) ([]eventstore.NewEvent, error) {
			evs, err := p.decide(history)
			if err != nil {
				return nil, err
			}
			return x.encode(p.aggType, evs)
		},
	}
	if req.IdempotencyKey != "" {
		status, id := req.Status, p.id
		cmd.Idempotency = &eventstore.Idempotency{Key: req.IdempotencyKey, Principal: req.Principal,
			RequestHash: req.Fingerprint.Hash(),
			Response:    func(r eventstore.Result) (int, []byte) { return status, answer(id, r.Version) }}
	}
	res, err := x.repo.Execute(ctx, cmd)
	if err != nil {
		if errors.Is(err, eventstore.ErrVersionConflict) {
			x.m.conflicts.WithLabelValues(p.aggType).Inc()
		}
		return Result{}, err
	}
	if res.Replayed {
		return Result{Replayed: true, Status: res.Status, Body: res.Body}, nil
	}
	for _, a := range res.Appended {
		x.m.appended.WithLabelValues(p.aggType, a.Type).Inc()
	}
	return Result{ID: p.id, Version: res.Version, Status: req.Status, Body: answer(p.id, res.Version)}, nil
}

// encode marshals the decided events' payloads and checks each against
// its schema.
func (x *executor) encode(aggType string, evs []domain.Event) ([]eventstore.NewEvent, error) {
	out := make([]eventstore.NewEvent, len(evs))
	for i, e := range evs {
		b, err := json.Marshal(e.Payload)
		if err != nil {
			return nil, fmt.Errorf("encoding %s: %w", e.Type, err)
		}
		if err := x.schemas.Validate(aggType, e.Type, e.SchemaVersion, b); err != nil {
			return nil, err
		}
		out[i] = eventstore.NewEvent{Type: e.Type, SchemaVersion: e.SchemaVersion, Payload: b}
	}
	return out, nil
}

// answer is the body of a successful write: {"id":%q,"version":%d},
// appended without fmt's formatting machinery (strconv.AppendQuote is
// what %q does with a string).
func answer(id string, version int64) []byte {
	b := make([]byte, 0, 32+len(id))
	b = append(b, `{"id":`...)
	b = strconv.AppendQuote(b, id)
	b = append(b, `,"version":`...)
	b = strconv.AppendInt(b, version, 10)
	return append(b, '}')
}
