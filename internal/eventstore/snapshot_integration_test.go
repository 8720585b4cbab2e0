//go:build integration

package eventstore

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/google/uuid"

	"cqrsflow/internal/testenv"
)

// counter is a test aggregate: each "Added" event adds its n to the sum.
// Its state is the snapshot; handed records how many events the last
// DecideFrom was handed and whether it got a snapshot.
type counter struct {
	Version int64 `json:"version"`
	Sum     int64 `json:"sum"`
}

type counterCmds struct {
	handed, fromSnap atomic.Int64
}

func (c *counterCmds) fold(from *Snapshot, events []Event) (counter, error) {
	var s counter
	if from != nil {
		dec := json.NewDecoder(bytes.NewReader(from.State))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&s); err != nil || s.Version != from.Version {
			return s, fmt.Errorf("%w: %s (%v)", ErrSnapshotInvalid, from.State, err)
		}
		c.fromSnap.Add(1)
	}
	c.handed.Store(int64(len(events)))
	for _, e := range events {
		var p struct{ N int64 }
		if err := json.Unmarshal(e.Payload, &p); err != nil {
			return s, err
		}
		s.Sum += p.N
		s.Version = e.Version
	}
	return s, nil
}

// add is a command adding n to counter id at any version.
func (c *counterCmds) add(id string, n int64, expected int64) Command {
	return Command{AggregateType: "counter", AggregateID: id, ExpectedVersion: expected, StateVersion: 1,
		DecideFrom: func(from *Snapshot, events []Event) (Decision, error) {
			s, err := c.fold(from, events)
			if err != nil {
				return Decision{}, err
			}
			s.Version++
			s.Sum += n
			state, _ := json.Marshal(s)
			return Decision{Events: []NewEvent{ev("Added", fmt.Sprintf(`{"n":%d}`, n))}, State: state}, nil
		}}
}

func snapshotRow(t *testing.T, pg *testenv.PG, id string) (version int64, sv int, state string) {
	t.Helper()
	err := pg.Pool.QueryRow(context.Background(),
		`SELECT version, schema_version, state::text FROM aggregate_snapshots WHERE aggregate_type = 'counter' AND aggregate_id = $1`, id).
		Scan(&version, &sv, &state)
	if err != nil {
		t.Fatalf("snapshot of %s: %v", id, err)
	}
	return version, sv, state
}

// executors are the two write paths: one command per transaction, and
// group commit (a batch of one, and of several commands on one aggregate).
func executors(t *testing.T, s *Store) map[string]func(cmds ...Command) []outcome {
	b := unstarted(t, s)
	return map[string]func(cmds ...Command) []outcome{
		"store": func(cmds ...Command) []outcome {
			var out []outcome
			for _, c := range cmds {
				res, err := s.Execute(context.Background(), c)
				out = append(out, outcome{res, err})
			}
			return out
		},
		"batch": func(cmds ...Command) []outcome { return runOne(t, b, cmds...) },
	}
}

// Every append writes the snapshot in its transaction; the next command
// gets it and only the events after it, on both paths, and several
// commands on one aggregate in one batch each start from the state the
// previous one left.
func TestSnapshotWrittenWithTheEvents(t *testing.T) {
	pg := testenv.Postgres(t)
	s := newStore(pg.Pool, testenv.Name(t))
	defer s.Close()
	for name, exec := range executors(t, s) {
		t.Run(name, func(t *testing.T) {
			c := &counterCmds{}
			id := uuid.NewString()
			if out := exec(c.add(id, 5, NoAggregate)); out[0].err != nil || out[0].res.Version != 1 {
				t.Fatalf("create: %+v", out)
			}
			if v, sv, st := snapshotRow(t, pg, id); v != 1 || sv != 1 || st != `{"sum": 5, "version": 1}` {
				t.Fatalf("snapshot after the create: v%d sv%d %s", v, sv, st)
			}
			out := exec(c.add(id, 1, 1), c.add(id, 2, AnyVersion), c.add(id, 3, 3))
			for i, o := range out {
				if o.err != nil || o.res.Version != int64(i+2) {
					t.Fatalf("command %d: %+v", i, o)
				}
			}
			if c.handed.Load() != 0 || c.fromSnap.Load() != 3 {
				t.Errorf("the last command was handed %d events, %d commands started from a snapshot; want 0 and 3", c.handed.Load(), c.fromSnap.Load())
			}
			if v, _, st := snapshotRow(t, pg, id); v != 4 || st != `{"sum": 11, "version": 4}` {
				t.Errorf("snapshot: v%d %s, want v4 sum 11", v, st)
			}
			// A command folding the whole history (Decide) and plain
			// events between snapshot commands: the next snapshot still
			// holds every event.
			whole := Command{AggregateType: "counter", AggregateID: id, ExpectedVersion: AnyVersion,
				Decide: func(h []Event) ([]NewEvent, error) {
					if len(h) != 4 {
						return nil, fmt.Errorf("Decide was handed %d events, want the whole history of 4", len(h))
					}
					return []NewEvent{ev("Added", `{"n":100}`)}, nil
				}}
			plain := Command{AggregateType: "counter", AggregateID: id, ExpectedVersion: AnyVersion, Events: []NewEvent{ev("Added", `{"n":1000}`)}}
			out = exec(whole, c.add(id, 4, 5), plain, c.add(id, 5, 7))
			for i, o := range out {
				if o.err != nil || o.res.Version != int64(i+5) {
					t.Fatalf("mixed command %d: %+v", i, o)
				}
			}
			if v, _, st := snapshotRow(t, pg, id); v != 8 || st != `{"sum": 1120, "version": 8}` {
				t.Errorf("snapshot after the mixed commands: v%d %s, want v8 sum 1120", v, st)
			}
			// A create and an update of a new aggregate together.
			id2 := uuid.NewString()
			out = exec(c.add(id2, 1, NoAggregate), c.add(id2, 2, 1))
			if out[0].err != nil || out[1].err != nil || out[1].res.Version != 2 {
				t.Fatalf("create and update: %+v", out)
			}
			if v, _, st := snapshotRow(t, pg, id2); v != 2 || st != `{"sum": 3, "version": 2}` {
				t.Errorf("snapshot after create+update: v%d %s", v, st)
			}
		})
	}
}

// A snapshot is derived data and never trusted over the events: one that
// does not decode, one at another version than the head allows (ahead of
// it), one whose state is not at its row's version, or one written with
// another state version is ignored; the command folds the whole history,
// decides right, and leaves a sound snapshot.
func TestBrokenSnapshotIgnoredAndRewritten(t *testing.T) {
	pg := testenv.Postgres(t)
	s := newStore(pg.Pool, testenv.Name(t))
	defer s.Close()
	breaks := map[string]string{
		"garbage":       `UPDATE aggregate_snapshots SET state = '{"garbage": true}' WHERE aggregate_id = $1`,
		"ahead":         `UPDATE aggregate_snapshots SET version = 99 WHERE aggregate_id = $1`,
		"state behind":  `UPDATE aggregate_snapshots SET version = 2 WHERE aggregate_id = $1`,
		"state version": `UPDATE aggregate_snapshots SET schema_version = 7, state = '{"sum": 1000, "version": 3}' WHERE aggregate_id = $1`,
	}
	for name, exec := range executors(t, s) {
		for what, breakSQL := range breaks {
			t.Run(name+"/"+what, func(t *testing.T) {
				c := &counterCmds{}
				id := uuid.NewString()
				for i, cmd := range []Command{c.add(id, 1, NoAggregate), c.add(id, 2, 1), c.add(id, 3, 2)} {
					if out := exec(cmd); out[0].err != nil {
						t.Fatalf("command %d: %v", i, out[0].err)
					}
				}
				if _, err := pg.Pool.Exec(context.Background(), breakSQL, id); err != nil {
					t.Fatal(err)
				}
				out := exec(c.add(id, 4, 3))
				if out[0].err != nil || out[0].res.Version != 4 {
					t.Fatalf("command on the broken snapshot: %+v", out[0])
				}
				if v, sv, st := snapshotRow(t, pg, id); v != 4 || sv != 1 || st != `{"sum": 10, "version": 4}` {
					t.Errorf("snapshot after: v%d sv%d %s, want v4 sv1 sum 10", v, sv, st)
				}
			})
		}
	}
}

// RebuildSnapshots rewrites every snapshot of a type from the events, at
// the new state version, and commands keep giving the same answers.
func TestRebuildSnapshots(t *testing.T) {
	pg := testenv.Postgres(t)
	s := newStore(pg.Pool, testenv.Name(t))
	defer s.Close()
	ctx := context.Background()
	c := &counterCmds{}
	ids := []string{uuid.NewString(), uuid.NewString(), uuid.NewString()}
	for i, id := range ids {
		for v := range int64(i + 1) {
			exp := v
			if _, err := s.Execute(ctx, c.add(id, int64(10*i)+v, exp)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := pg.Pool.Exec(ctx, `UPDATE aggregate_snapshots SET state = '{"broken": 1}' WHERE aggregate_id = $1`, ids[2]); err != nil {
		t.Fatal(err)
	}
	n, err := s.RebuildSnapshots(ctx, "counter", 2, func(h []Event) (json.RawMessage, error) {
		st, err := c.fold(nil, h)
		if err != nil {
			return nil, err
		}
		return json.Marshal(st)
	})
	if err != nil || n != 3 {
		t.Fatalf("rebuild: %d %v, want 3", n, err)
	}
	for i, id := range ids {
		v, sv, st := snapshotRow(t, pg, id)
		var want int64
		for k := range int64(i + 1) {
			want += int64(10*i) + k
		}
		if v != int64(i+1) || sv != 2 || st != fmt.Sprintf(`{"sum": %d, "version": %d}`, want, i+1) {
			t.Errorf("%s: v%d sv%d %s, want v%d sv2 sum %d", id, v, sv, st, i+1, want)
		}
	}
	if _, err := s.RebuildSnapshots(ctx, "counter", 0, nil); err == nil {
		t.Error("a rebuild without a state version and a fold must fail")
	}
	if _, err := s.RebuildSnapshots(ctx, "counter", 2, func([]Event) (json.RawMessage, error) { return nil, fmt.Errorf("boom") }); err == nil {
		t.Error("a failing fold must fail the rebuild")
	}
}
