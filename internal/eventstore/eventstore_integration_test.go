//go:build integration

package eventstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"cqrsflow/internal/envelope"
	"cqrsflow/internal/outbox"
	"cqrsflow/internal/testenv"
)

func ev(typ string, payload string) NewEvent {
	return NewEvent{Type: typ, SchemaVersion: 1, Payload: json.RawMessage(payload)}
}

func count(t *testing.T, pg *testenv.PG, sql string, args ...any) int {
	t.Helper()
	var n int
	if err := pg.Pool.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

func TestCreateAppendsEventOutboxAndNotifies(t *testing.T) {
	pg := testenv.Postgres(t)
	channel := testenv.Name(t)
	s := newStore(pg.Pool, channel)
	ctx := context.Background()

	listener, err := pgx.Connect(ctx, pg.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer listener.Close(ctx)
	if _, err := listener.Exec(ctx, "LISTEN "+channel); err != nil {
		t.Fatal(err)
	}

	id := uuid.NewString()
	occurred := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	res, err := s.Execute(ctx, Command{
		AggregateType: "product", AggregateID: id, ExpectedVersion: NoAggregate,
		Events:     []NewEvent{ev("ProductCreated", `{"name":"a"}`), ev("ProductUpdated", `{"name":"b"}`)},
		Metadata:   envelope.Metadata{CorrelationID: "corr", RequestID: "req", Principal: "tester"},
		OccurredAt: occurred,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Version != 2 || len(res.Appended) != 2 || res.Appended[0].Version != 1 || res.Appended[1].Version != 2 {
		t.Fatalf("result %+v", res)
	}
	if res.Appended[0].GlobalPosition >= res.Appended[1].GlobalPosition {
		t.Fatalf("global positions not increasing: %+v", res.Appended)
	}

	var meta envelope.Metadata
	var gotOccurred, recorded time.Time
	err = pg.Pool.QueryRow(ctx, `SELECT metadata, occurred_at, recorded_at FROM events WHERE aggregate_id = $1 AND version = 1`, id).
		Scan(&meta, &gotOccurred, &recorded)
	if err != nil {
		t.Fatal(err)
	}
	if meta.CorrelationID != "corr" || meta.Principal != "tester" || meta.RequestID != "req" {
		t.Errorf("metadata %+v", meta)
	}
	if !gotOccurred.Equal(occurred) || recorded.Before(occurred) {
		t.Errorf("occurred_at %v recorded_at %v", gotOccurred, recorded)
	}

	// Outbox rows: one per event, ids in version order, same shard.
	rows, err := pg.Pool.Query(ctx, `SELECT o.id, e.version, o.shard FROM outbox o JOIN events e USING (global_position)
WHERE o.aggregate_id = $1 ORDER BY o.id`, id)
	if err != nil {
		t.Fatal(err)
	}
	var versions []int64
	var shard int16 = -1
	for rows.Next() {
		var oid, v int64
		var sh int16
		if err := rows.Scan(&oid, &v, &sh); err != nil {
			t.Fatal(err)
		}
		versions = append(versions, v)
		if shard >= 0 && sh != shard {
			t.Errorf("shards differ: %d %d", shard, sh)
		}
		shard = sh
	}
	if fmt.Sprint(versions) != "[1 2]" {
		t.Fatalf("outbox versions %v", versions)
	}

	nctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	n, err := listener.WaitForNotification(nctx)
	if err != nil {
		t.Fatalf("no notification: %v", err)
	}
	if n.Channel != channel || n.Payload != fmt.Sprint(shard) {
		t.Errorf("notification %s %q, want shard %d", n.Channel, n.Payload, shard)
	}

	// Creating it again is a conflict carrying the current version.
	_, err = s.Create(ctx, "product", id, []NewEvent{ev("ProductCreated", `{}`)})
	var ce *ConflictError
	if !errors.As(err, &ce) || ce.Current != 2 || !errors.Is(err, ErrVersionConflict) {
		t.Fatalf("second create: %v", err)
	}
	hist, err := s.Load(ctx, "product", id)
	if err != nil || len(hist) != 2 || hist[1].Type != "ProductUpdated" {
		t.Fatalf("load: %+v %v", hist, err)
	}
}

func TestAtomicityOnFailureAfterEventInsert(t *testing.T) {
	pg := testenv.Postgres(t)
	channel := testenv.Name(t)
	s := newStore(pg.Pool, channel)
	defer s.Close()
	ctx := context.Background()
	listener, err := pgx.Connect(ctx, pg.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer listener.Close(ctx)
	if _, err := listener.Exec(ctx, "LISTEN "+channel); err != nil {
		t.Fatal(err)
	}
	id := uuid.NewString()
	if _, err := s.Create(ctx, "order", id, []NewEvent{ev("OrderCreated", `{}`)}); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	if _, err := listener.WaitForNotification(wctx); err != nil {
		t.Fatalf("the committed create did not notify: %v", err)
	}
	cancel()
	injected := errors.New("injected failure")
	var inserted int
	s.afterInsert = func(ctx context.Context) error {
		// The events are inserted (visible inside the transaction only).
		inserted = count(t, pg, `SELECT count(*) FROM events WHERE aggregate_id = $1`, id)
		return injected
	}
	for _, cmd := range []Command{
		{AggregateType: "order", AggregateID: id, ExpectedVersion: 1, Decide: func(h []Event) ([]NewEvent, error) {
			return []NewEvent{ev("OrderPaid", `{}`)}, nil
		}, Idempotency: &Idempotency{Key: "k1", Principal: "p", RequestHash: []byte{1},
			Response: func(Result) (int, []byte) { return 200, []byte(`{}`) }}},
		{AggregateType: "order", AggregateID: id, ExpectedVersion: AnyVersion, Events: []NewEvent{ev("OrderPaid", `{}`)}},
		{AggregateType: "order", AggregateID: uuid.NewString(), ExpectedVersion: NoAggregate, Events: []NewEvent{ev("OrderCreated", `{}`)}},
	} {
		if _, err := s.Execute(ctx, cmd); !errors.Is(err, injected) {
			t.Fatalf("execute: %v, want injected failure", err)
		}
	}
	if inserted != 1 {
		t.Errorf("outside the transaction %d events seen during the hook, want 1 (only the committed one)", inserted)
	}
	s.afterInsert = nil
	wctx, cancel = context.WithTimeout(ctx, 300*time.Millisecond)
	if n, err := listener.WaitForNotification(wctx); err == nil {
		t.Errorf("failed appends notified: %+v", n)
	}
	cancel()
	if n := count(t, pg, `SELECT count(*) FROM events`); n != 1 {
		t.Errorf("events after failed appends: %d, want 1", n)
	}
	if n := count(t, pg, `SELECT count(*) FROM outbox`); n != 1 {
		t.Errorf("outbox rows after failed appends: %d, want 1", n)
	}
	if n := count(t, pg, `SELECT count(*) FROM idempotency_keys`); n != 0 {
		t.Errorf("idempotency keys after failed append: %d, want 0", n)
	}
	if n := count(t, pg, `SELECT version FROM aggregates WHERE aggregate_id = $1`, id); n != 1 {
		t.Errorf("head version after failed appends: %d, want 1", n)
	}
	if n := count(t, pg, `SELECT count(*) FROM aggregates`); n != 1 {
		t.Errorf("aggregates after failed create: %d, want 1", n)
	}
	// The pool is healthy afterwards: the next append works.
	if v, err := s.Append(ctx, "order", id, 1, []NewEvent{ev("OrderPaid", `{}`)}); err != nil || v != 2 {
		t.Fatalf("append after failures: %d %v", v, err)
	}
}

func TestConcurrentSameExpectedVersion(t *testing.T) {
	pg := testenv.Postgres(t)
	s := New(pg.Pool)
	ctx := context.Background()
	id := uuid.NewString()
	if _, err := s.Create(ctx, "product", id, []NewEvent{ev("ProductCreated", `{}`)}); err != nil {
		t.Fatal(err)
	}
	const n = 50
	var wg sync.WaitGroup
	errs := make([]error, n)
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			_, errs[i] = s.Update(ctx, "product", id, 1, func(h []Event) ([]NewEvent, error) {
				if len(h) != 1 {
					return nil, fmt.Errorf("history of %d events", len(h))
				}
				return []NewEvent{ev("ProductUpdated", fmt.Sprintf(`{"writer":%d}`, i))}, nil
			})
		})
	}
	close(start)
	wg.Wait()
	ok, conflicts := 0, 0
	for _, err := range errs {
		var ce *ConflictError
		switch {
		case err == nil:
			ok++
		case errors.As(err, &ce) && ce.Current == 2 && ce.Expected == 1:
			conflicts++
		default:
			t.Errorf("unexpected error: %v", err)
		}
	}
	if ok != 1 || conflicts != n-1 {
		t.Fatalf("%d successes and %d conflicts, want 1 and %d", ok, conflicts, n-1)
	}
	if c := count(t, pg, `SELECT count(*) FROM events WHERE aggregate_id = $1`, id); c != 2 {
		t.Fatalf("%d events, want 2", c)
	}
}

func TestConcurrentAppendsWithoutExpectation(t *testing.T) {
	pg := testenv.Postgres(t)
	s := New(pg.Pool)
	ctx := context.Background()
	for _, mode := range []string{"blind", "fold"} {
		t.Run(mode, func(t *testing.T) {
			id := uuid.NewString()
			if mode == "fold" {
				if _, err := s.Create(ctx, "product", id, []NewEvent{ev("ProductCreated", `{}`)}); err != nil {
					t.Fatal(err)
				}
			}
			const n = 50
			var wg sync.WaitGroup
			errs := make([]error, n)
			for i := range n {
				wg.Go(func() {
					if mode == "blind" {
						_, errs[i] = s.Append(ctx, "product", id, AnyVersion, []NewEvent{ev("ProductUpdated", `{}`)})
						return
					}
					_, errs[i] = s.Update(ctx, "product", id, AnyVersion, func(h []Event) ([]NewEvent, error) {
						return []NewEvent{ev("ProductUpdated", `{}`)}, nil
					})
				})
			}
			wg.Wait()
			for _, err := range errs {
				if err != nil {
					t.Fatal(err)
				}
			}
			want := int64(n)
			if mode == "fold" {
				want++
			}
			rows, err := pg.Pool.Query(ctx, `SELECT e.version FROM outbox o JOIN events e USING (global_position)
WHERE e.aggregate_id = $1 ORDER BY o.id`, id)
			if err != nil {
				t.Fatal(err)
			}
			versions, err := pgx.CollectRows(rows, pgx.RowTo[int64])
			if err != nil {
				t.Fatal(err)
			}
			if int64(len(versions)) != want {
				t.Fatalf("%d events, want %d", len(versions), want)
			}
			for i, v := range versions {
				if v != int64(i+1) {
					t.Fatalf("outbox order / versions %v: gap or duplicate at %d", versions, i)
				}
			}
			if h := count(t, pg, `SELECT version FROM aggregates WHERE aggregate_id = $1`, id); int64(h) != want {
				t.Fatalf("head version %d, want %d", h, want)
			}
		})
	}
}

func TestIdempotency(t *testing.T) {
	pg := testenv.Postgres(t)
	s := New(pg.Pool)
	ctx := context.Background()
	id := uuid.NewString()
	cmd := func(hash byte) Command {
		return Command{AggregateType: "order", AggregateID: id, ExpectedVersion: AnyVersion,
			Events: []NewEvent{ev("OrderPaid", `{}`)},
			Idempotency: &Idempotency{Key: "key-1", Principal: "alice", RequestHash: []byte{hash},
				Response: func(r Result) (int, []byte) { return 200, fmt.Appendf(nil, `{"version":%d}`, r.Version) }}}
	}
	first, err := s.Execute(ctx, cmd(1))
	if err != nil || first.Replayed || string(first.Body) != `{"version":1}` {
		t.Fatalf("first: %+v %v", first, err)
	}
	again, err := s.Execute(ctx, cmd(1))
	if err != nil || !again.Replayed || again.Status != 200 || string(again.Body) != `{"version":1}` {
		t.Fatalf("replay: %+v %v", again, err)
	}
	if _, err := s.Execute(ctx, cmd(2)); !errors.Is(err, ErrIdempotencyMismatch) {
		t.Fatalf("different request, same key: %v", err)
	}
	other := cmd(1)
	other.Idempotency.Principal = "bob" // keys are scoped per principal
	if r, err := s.Execute(ctx, other); err != nil || r.Replayed || r.Version != 2 {
		t.Fatalf("same key other principal: %+v %v", r, err)
	}

	// Concurrent requests with one fresh key: exactly one appends.
	id2 := uuid.NewString()
	const n = 20
	var wg sync.WaitGroup
	results := make([]Result, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			results[i], errs[i] = s.Execute(ctx, Command{AggregateType: "order", AggregateID: id2, ExpectedVersion: AnyVersion,
				Events: []NewEvent{ev("OrderPaid", `{}`)},
				Idempotency: &Idempotency{Key: "concurrent", Principal: "alice", RequestHash: []byte{9},
					Response: func(r Result) (int, []byte) { return 201, fmt.Appendf(nil, `{"version":%d}`, r.Version) }}})
		})
	}
	wg.Wait()
	fresh := 0
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("concurrent %d: %v", i, errs[i])
		}
		if !results[i].Replayed {
			fresh++
		}
		if results[i].Status != 201 || string(results[i].Body) != `{"version":1}` {
			t.Errorf("concurrent %d: %d %s", i, results[i].Status, results[i].Body)
		}
	}
	if fresh != 1 {
		t.Fatalf("%d requests appended, want 1", fresh)
	}
	if c := count(t, pg, `SELECT count(*) FROM events WHERE aggregate_id = $1`, id2); c != 1 {
		t.Fatalf("%d events, want 1", c)
	}
}

func TestExpectedVersionOnMissingAggregate(t *testing.T) {
	pg := testenv.Postgres(t)
	s := New(pg.Pool)
	_, err := s.Update(context.Background(), "product", uuid.NewString(), 3, func([]Event) ([]NewEvent, error) {
		return []NewEvent{ev("ProductUpdated", `{}`)}, nil
	})
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("got %v, want ErrNotFound", err)
	}
	// A decision error aborts without appending and is returned as is.
	id := uuid.NewString()
	if _, err := s.Create(context.Background(), "product", id, []NewEvent{ev("ProductCreated", `{}`)}); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("rule")
	if _, err := s.Update(context.Background(), "product", id, 1, func([]Event) ([]NewEvent, error) { return nil, boom }); !errors.Is(err, boom) {
		t.Fatalf("decide error: %v", err)
	}
	if c := count(t, pg, `SELECT count(*) FROM events`); c != 1 {
		t.Fatalf("%d events", c)
	}
}

func TestUnavailable(t *testing.T) {
	// PostgreSQL down: nothing listens on the port. The error is classified
	// as unavailable (HTTP 503) and comes back quickly.
	pool, err := pgxpool.New(context.Background(), "postgres://x:y@127.0.0.1:1/db?connect_timeout=2")
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	start := time.Now()
	_, err = New(pool).Create(context.Background(), "product", uuid.NewString(), []NewEvent{ev("ProductCreated", `{}`)})
	if err == nil || !IsUnavailable(err) {
		t.Fatalf("append with PostgreSQL down: %v (unavailable=%v)", err, IsUnavailable(err))
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("took %v", d)
	}
	if IsUnavailable(ErrVersionConflict) || IsUnavailable(errors.New("x")) || IsUnavailable(nil) {
		t.Error("plain errors must not be unavailable")
	}
}

func TestPurgeIdempotencyKeys(t *testing.T) {
	pg := testenv.Postgres(t)
	s := New(pg.Pool)
	ctx := context.Background()
	cmd := func() Command {
		return Command{AggregateType: "order", AggregateID: "o-1", ExpectedVersion: AnyVersion,
			Events: []NewEvent{ev("OrderPaid", `{}`)},
			Idempotency: &Idempotency{Key: "k", Principal: "p", RequestHash: []byte{1},
				Response: func(r Result) (int, []byte) { return 200, fmt.Appendf(nil, `{"version":%d}`, r.Version) }}}
	}
	if _, err := s.Execute(ctx, cmd()); err != nil {
		t.Fatal(err)
	}
	if n, err := s.PurgeIdempotencyKeys(ctx, time.Hour); err != nil || n != 0 {
		t.Fatalf("young key purged: %d %v", n, err)
	}
	if _, err := pg.Pool.Exec(ctx, `UPDATE idempotency_keys SET created_at = created_at - interval '2 hours'`); err != nil {
		t.Fatal(err)
	}
	if n, err := s.PurgeIdempotencyKeys(ctx, time.Hour); err != nil || n != 1 {
		t.Fatalf("old key not purged: %d %v", n, err)
	}
	// After the purge the same key runs the command again.
	if r, err := s.Execute(ctx, cmd()); err != nil || r.Replayed || r.Version != 2 {
		t.Fatalf("after purge: %+v %v", r, err)
	}
}

// listenOn starts a notifier on a test channel with interval every and a
// connection LISTENing on it; wait returns the next notification within
// d, or an error.
func listenOn(t *testing.T, every time.Duration) (n *notifier, wait func(d time.Duration) (*pgconn.Notification, error)) {
	t.Helper()
	pg := testenv.Postgres(t)
	channel := testenv.Name(t)
	ctx := context.Background()
	listener, err := pgx.Connect(ctx, pg.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { listener.Close(context.Background()) })
	if _, err := listener.Exec(ctx, "LISTEN "+channel); err != nil {
		t.Fatal(err)
	}
	n = startNotifier(pg.Pool, channel, every)
	t.Cleanup(n.close)
	return n, func(d time.Duration) (*pgconn.Notification, error) {
		nctx, cancel := context.WithTimeout(ctx, d)
		defer cancel()
		return listener.WaitForNotification(nctx)
	}
}

// One round of the notifier is one notification naming every shard that
// received rows, whatever their number: a listener reads one message per
// round, not one per shard.
func TestNotifierSendsOneNotificationPerRound(t *testing.T) {
	n, wait := listenOn(t, DefaultNotifyInterval)
	n.addAll([]int{42, 3, 17, 3})
	got, err := wait(5 * time.Second)
	if err != nil {
		t.Fatalf("no notification: %v", err)
	}
	if got.Payload != "3,17,42" {
		t.Errorf("payload %q, want 3,17,42 (each shard once, in order)", got.Payload)
	}
	if extra, err := wait(300 * time.Millisecond); err == nil {
		t.Errorf("a second notification for the same round: %q", extra.Payload)
	}

	// Every shard at once still fits one notification.
	all := make([]int, outbox.ShardCount)
	for i := range all {
		all[i] = i
	}
	n.addAll(all)
	got, err = wait(5 * time.Second)
	if err != nil {
		t.Fatalf("no notification for every shard: %v", err)
	}
	if shards, ok := outbox.ParseNotifyPayload(got.Payload); !ok || len(shards) != outbox.ShardCount {
		t.Errorf("payload %q names %d shards, want all %d", got.Payload, len(shards), outbox.ShardCount)
	}
	if failed := n.failed.Load(); failed != 0 {
		t.Errorf("%d rounds failed", failed)
	}
}

// Commits after a round wait for the next one, at least the interval
// later: they share it instead of each sending its own.
func TestNotifierKeepsTheIntervalBetweenRounds(t *testing.T) {
	const every = 400 * time.Millisecond
	n, wait := listenOn(t, every)
	next := func() (*pgconn.Notification, time.Time) {
		got, err := wait(5 * time.Second)
		if err != nil {
			t.Fatalf("no notification: %v", err)
		}
		return got, time.Now()
	}
	n.add(1) // after a quiet interval: sent at once
	first, at := next()
	n.add(2)
	n.add(3)
	second, at2 := next()
	if first.Payload != "1" || second.Payload != "2,3" {
		t.Errorf("payloads %q, %q; want 1, then 2,3 in one round", first.Payload, second.Payload)
	}
	// The round was sent before the first notification was read, so the
	// second comes at least every minus that read's delay later.
	if gap := at2.Sub(at); gap < every/2 {
		t.Errorf("second round %v after the first, want about %v", gap, every)
	}
}
