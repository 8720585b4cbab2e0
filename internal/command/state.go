package command

import (
	"encoding/json"
	"fmt"

	"cqrsflow/internal/domain"
	"cqrsflow/internal/domain/order"
	"cqrsflow/internal/domain/product"
	"cqrsflow/internal/eventstore"
	"cqrsflow/internal/upcast"
)

// stateFold is how the handlers fold one aggregate type: the domain's
// fold over events at the current schema versions, and the state's
// encoding as the event store's snapshot.
type stateFold[S any] struct {
	aggType      string
	stateVersion int
	fold         func(from S, events []eventstore.Event) (S, error)
	decode       func(state []byte) (S, error)
	version      func(S) int64
	encode       func(S) ([]byte, error)
}

var productFold = stateFold[product.Product]{
	aggType: product.AggregateType, stateVersion: product.StateVersion,
	fold: func(p product.Product, history []eventstore.Event) (product.Product, error) {
		evs := make([]product.Event, len(history))
		for i, e := range history {
			evs[i] = product.Event{Version: e.Version, Type: e.Type, SchemaVersion: e.SchemaVersion, Payload: e.Payload}
		}
		return product.FoldFrom(p, evs)
	},
	decode:  product.FromState,
	version: func(p product.Product) int64 { return p.Version },
	encode:  product.Product.State,
}

var orderFold = stateFold[order.Order]{
	aggType: order.AggregateType, stateVersion: order.StateVersion,
	fold: func(o order.Order, history []eventstore.Event) (order.Order, error) {
		evs := make([]order.Event, len(history))
		for i, e := range history {
			evs[i] = order.Event{Version: e.Version, Type: e.Type, SchemaVersion: e.SchemaVersion, Payload: e.Payload}
		}
		return order.FoldFrom(o, evs)
	},
	decode:  order.FromState,
	version: func(o order.Order) int64 { return o.Version },
	encode:  order.Order.State,
}

// decider turns a domain step on the folded state into the store's
// DecideFrom: decode the snapshot (a snapshot that does not decode, or
// is not at its own version, is refused with ErrSnapshotInvalid and the
// store hands the whole history instead), upcast and fold the events
// after it, decide, encode and validate the decided events, and fold
// them too: the state after them is the new snapshot.
func decider[S any](x *executor, f stateFold[S], step func(*S) ([]domain.Event, error)) func(*eventstore.Snapshot, []eventstore.Event) (eventstore.Decision, error) {
	return func(snap *eventstore.Snapshot, history []eventstore.Event) (eventstore.Decision, error) {
		var s S
		var base int64
		if snap != nil {
			var err error
			if s, err = f.decode(snap.State); err != nil {
				return eventstore.Decision{}, fmt.Errorf("%w: %s at v%d: %w", eventstore.ErrSnapshotInvalid, f.aggType, snap.Version, err)
			}
			if v := f.version(s); v != snap.Version {
				return eventstore.Decision{}, fmt.Errorf("%w: %s snapshot row at v%d holds a state at v%d", eventstore.ErrSnapshotInvalid, f.aggType, snap.Version, v)
			}
			base = snap.Version
		}
		history, err := upcastHistory(x.up, f.aggType, history)
		if err != nil {
			return eventstore.Decision{}, err
		}
		if s, err = f.fold(s, history); err != nil {
			return eventstore.Decision{}, fmt.Errorf("folding %s: %w", f.aggType, err)
		}
		base += int64(len(history))
		decided, err := step(&s)
		if err != nil {
			return eventstore.Decision{}, err
		}
		evs, err := x.encode(f.aggType, decided)
		if err != nil {
			return eventstore.Decision{}, err
		}
		after := make([]eventstore.Event, len(evs))
		for i, e := range evs {
			after[i] = eventstore.Event{Version: base + int64(i) + 1, Type: e.Type, SchemaVersion: e.SchemaVersion, Payload: e.Payload}
		}
		if s, err = f.fold(s, after); err != nil {
			return eventstore.Decision{}, fmt.Errorf("folding the decided %s events: %w", f.aggType, err)
		}
		state, err := f.encode(s)
		if err != nil {
			return eventstore.Decision{}, fmt.Errorf("encoding %s state: %w", f.aggType, err)
		}
		return eventstore.Decision{Events: evs, State: state}, nil
	}
}

// upcastHistory returns history with every payload at the newest schema
// version the registry knows (history itself when nothing changes).
func upcastHistory(up *upcast.Registry, aggType string, history []eventstore.Event) ([]eventstore.Event, error) {
	var out []eventstore.Event
	for i, e := range history {
		p, v, err := up.Upcast(aggType, e.Type, e.SchemaVersion, e.Payload)
		if err != nil {
			return nil, fmt.Errorf("reading %s v%d: %w", aggType, e.Version, err)
		}
		if v == e.SchemaVersion && out == nil {
			continue
		}
		if out == nil {
			out = append(make([]eventstore.Event, 0, len(history)), history[:i]...)
		}
		e.Payload, e.SchemaVersion = p, v
		out = append(out, e)
	}
	if out == nil {
		return history, nil
	}
	return out, nil
}

// Snapshotter rebuilds the snapshots of one aggregate type after its fold
// or its state's encoding changed (`api snapshots rebuild`).
type Snapshotter struct {
	AggregateType string
	StateVersion  int
	// Fold is the state the handlers' DecideFrom would leave after the
	// whole history: the same upcasting, the same fold, the same encoding.
	Fold eventstore.SnapshotFold
}

// Snapshotters lists the aggregate types the handlers keep snapshots of.
func Snapshotters() []Snapshotter {
	up := upcast.Events()
	return []Snapshotter{snapshotter(productFold, up), snapshotter(orderFold, up)}
}

func snapshotter[S any](f stateFold[S], up *upcast.Registry) Snapshotter {
	return Snapshotter{AggregateType: f.aggType, StateVersion: f.stateVersion,
		Fold: func(history []eventstore.Event) (json.RawMessage, error) {
			history, err := upcastHistory(up, f.aggType, history)
			if err != nil {
				return nil, err
			}
			var s S
			if s, err = f.fold(s, history); err != nil {
				return nil, fmt.Errorf("folding %s: %w", f.aggType, err)
			}
			return f.encode(s)
		}}
}
