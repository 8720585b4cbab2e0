// Package upcast turns stored event payloads written with an older schema
// version into the current one, so that every fold of the code knows one
// version of each event type only.
//
// Events are immutable: PostgreSQL and the Kafka topics keep every event
// as it was written (v1 stays v1). Whoever reads events runs them through
// a Registry first:
//
//   - the write side (internal/command) before the domain folds an
//     aggregate's history;
//   - the read side (internal/projection/products) before it folds an
//     envelope into a document, so the projector, its DLQ redrive and a
//     rebuild from the earliest offsets all fold v1 as the current version;
//   - a backfill or an export that hands events to another system
//     (Registry.Envelope), if that system wants current payloads.
//
// The outbox relay publishes stored events as they are: a topic holds
// what the store holds, and each consumer upcasts what it reads.
//
// An upcaster is registered per (aggregate type, event type, from
// version) and returns the payload at a later version (normally from+1);
// Upcast chains them until no upcaster is registered for the version
// reached, so v1 → v2 → v3 needs only the two steps. Upcasters are pure
// functions of the payload: no clock, no lookup, no randomness, so the
// same stored event upcasts to the same payload everywhere and every time
// (the write side's snapshots and the read models rely on it).
package upcast

import (
	"encoding/json"
	"errors"
	"fmt"

	"cqrsflow/internal/envelope"
)

// Func upcasts one payload written at the version it is registered for.
// It returns the payload at version to (> from).
type Func func(payload json.RawMessage) (out json.RawMessage, to int, err error)

// Key identifies the payloads an upcaster applies to.
type Key struct {
	AggregateType string
	EventType     string
	From          int
}

// ErrUpcast marks a payload an upcaster refused (it does not have the
// shape of its version) or a chain that does not advance.
var ErrUpcast = errors.New("cannot upcast event payload")

// Error is an ErrUpcast with the step that failed.
type Error struct {
	Key
	Err error
}

func (e *Error) Error() string {
	return fmt.Sprintf("upcasting %s %s v%d: %v", e.AggregateType, e.EventType, e.From, e.Err)
}

// Unwrap returns the upcaster's error.
func (e *Error) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrUpcast) true.
func (e *Error) Is(target error) bool { return target == ErrUpcast }

// Registry holds the upcasters. It is filled before use (Register) and
// only read afterwards, so it is safe for concurrent readers. The zero
// value and nil upcast nothing.
type Registry struct {
	funcs map[Key]Func
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{funcs: map[Key]Func{}} }

// Register adds the upcaster of (aggregateType, eventType, from). A
// second upcaster for the same key is refused: which one would run
// would depend on the order of registration.
func (r *Registry) Register(aggregateType, eventType string, from int, f Func) error {
	k := Key{aggregateType, eventType, from}
	switch {
	case aggregateType == "" || eventType == "" || from < 1 || f == nil:
		return fmt.Errorf("upcast: registering %+v: aggregate type, event type, a version >= 1 and a function are required", k)
	case r.funcs[k] != nil:
		return fmt.Errorf("upcast: %s %s v%d registered twice", aggregateType, eventType, from)
	}
	if r.funcs == nil {
		r.funcs = map[Key]Func{}
	}
	r.funcs[k] = f
	return nil
}

// MustRegister is Register for the registries built at start-up from
// code: a conflict is a programming error.
func (r *Registry) MustRegister(aggregateType, eventType string, from int, f Func) *Registry {
	if err := r.Register(aggregateType, eventType, from, f); err != nil {
		panic(err)
	}
	return r
}

// Upcast returns payload upcast from version as far as the registered
// upcasters go, and the version reached. A payload without an upcaster
// for its version comes back as it is (same slice, no copy).
func (r *Registry) Upcast(aggregateType, eventType string, version int, payload json.RawMessage) (json.RawMessage, int, error) {
	if r == nil {
		return payload, version, nil
	}
	// Each step must raise the version, so a chain has at most one step
	// per registered upcaster; the bound only guards against a bug.
	for range len(r.funcs) + 1 {
		k := Key{aggregateType, eventType, version}
		f := r.funcs[k]
		if f == nil {
			return payload, version, nil
		}
		out, to, err := f(payload)
		if err != nil {
			return nil, 0, &Error{k, err}
		}
		if to <= version {
			return nil, 0, &Error{k, fmt.Errorf("upcaster returned version %d, not above %d", to, version)}
		}
		payload, version = out, to
	}
	return nil, 0, &Error{Key{aggregateType, eventType, version}, errors.New("upcaster chain does not end")}
}

// Envelope returns env with its payload and schema version upcast. env
// itself comes back when nothing applies; otherwise a copy (the caller's
// envelope, which a dead letter may still carry, is not changed).
func (r *Registry) Envelope(env *envelope.Envelope) (*envelope.Envelope, error) {
	p, v, err := r.Upcast(env.AggregateType, env.EventType, env.SchemaVersion, env.Payload)
	if err != nil {
		return nil, err
	}
	if v == env.SchemaVersion {
		return env, nil
	}
	out := *env
	out.Payload, out.SchemaVersion = p, v
	return &out, nil
}

// Keys lists the registered upcasters (for documentation and tests).
func (r *Registry) Keys() []Key {
	if r == nil {
		return nil
	}
	out := make([]Key, 0, len(r.funcs))
	for k := range r.funcs {
		out = append(out, k)
	}
	return out
}
