//go:build integration

package eventstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"cqrsflow/internal/envelope"
	"cqrsflow/internal/testenv"
)

var errIllegal = errors.New("illegal transition")

// runOne runs cmds as exactly one batch on s (no queueing, so the batch's
// composition is fixed) and returns each command's outcome.
func runOne(t *testing.T, b *Batcher, cmds ...Command) []outcome {
	t.Helper()
	batch := make([]*pending, len(cmds))
	for i, c := range cmds {
		batch[i] = pend(context.Background(), c)
	}
	b.runBatch(batch)
	out := make([]outcome, len(cmds))
	for i, p := range batch {
		select {
		case out[i] = <-p.done:
		case <-time.After(10 * time.Second):
			t.Fatalf("command %d got no answer", i)
		}
	}
	return out
}

func unstarted(t *testing.T, s *Store) *Batcher {
	t.Helper()
	b, err := newBatcher(s, DefaultBatchConfig(), testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func appendOne(typ string) func([]Event) ([]NewEvent, error) {
	return func(h []Event) ([]NewEvent, error) {
		return []NewEvent{ev(typ, fmt.Sprintf(`{"seen":%d}`, len(h)))}, nil
	}
}

func keyOf(key string, hash byte) *Idempotency {
	return &Idempotency{Key: key, Principal: "tester", RequestHash: []byte{hash},
		Response: func(r Result) (int, []byte) { return 200, fmt.Appendf(nil, `{"version":%d}`, r.Version) }}
}

func TestBatchPerCommandOutcomes(t *testing.T) {
	pg := testenv.Postgres(t)
	s := newStore(pg.Pool, testenv.Name(t))
	defer s.Close()
	ctx := context.Background()
	x, y := uuid.NewString(), uuid.NewString()
	for _, id := range []string{x, y} {
		if _, err := s.Create(ctx, "order", id, []NewEvent{ev("OrderCreated", `{}`)}); err != nil {
			t.Fatal(err)
		}
	}
	created := uuid.NewString()
	b := unstarted(t, s)
	out := runOne(t, b,
		Command{AggregateType: "order", AggregateID: created, ExpectedVersion: NoAggregate, Decide: appendOne("OrderCreated")}, // 0 ok
		Command{AggregateType: "order", AggregateID: x, ExpectedVersion: 7, Decide: appendOne("OrderPaid")},                    // 1 conflict
		Command{AggregateType: "order", AggregateID: y, ExpectedVersion: AnyVersion, Idempotency: keyOf("k-illegal", 1), // 2 domain error
			Decide: func([]Event) ([]NewEvent, error) { return nil, errIllegal }},
		Command{AggregateType: "order", AggregateID: y, ExpectedVersion: 1, // 3 schema failure (as Decide reports it)
			Decide: func([]Event) ([]NewEvent, error) { return nil, errors.New("payload does not match its schema") }},
		Command{AggregateType: "order", AggregateID: x, ExpectedVersion: AnyVersion, Decide: appendOne("OrderPaid")}, // 4 ok
		Command{AggregateType: "order", AggregateID: y, ExpectedVersion: 1, Idempotency: keyOf("k-ok", 2), // 5 ok, keyed
			Decide: appendOne("OrderShipped")},
		Command{AggregateType: "order", AggregateID: uuid.NewString(), ExpectedVersion: 3, Decide: appendOne("OrderPaid")}, // 6 not found
		Command{AggregateType: "order", AggregateID: x, ExpectedVersion: AnyVersion, // 7 panics
			Decide: func([]Event) ([]NewEvent, error) { panic("boom") }},
		Command{AggregateType: "order", AggregateID: x, ExpectedVersion: NoAggregate, Events: []NewEvent{ev("OrderCreated", `{}`)}}, // 8 create of an existing id
	)
	var ce *ConflictError
	checks := []struct {
		ok   bool
		what string
	}{
		{out[0].err == nil && out[0].res.Version == 1 && len(out[0].res.Appended) == 1, "create"},
		{errors.As(out[1].err, &ce) && ce.Current == 1 && ce.Expected == 7, "conflict with the current version"},
		{errors.Is(out[2].err, errIllegal), "domain error"},
		{out[3].err != nil && out[3].err.Error() == "payload does not match its schema", "schema failure"},
		{out[4].err == nil && out[4].res.Version == 2, "update of x"},
		{out[5].err == nil && out[5].res.Version == 2 && string(out[5].res.Body) == `{"version":2}`, "keyed update of y"},
		{errors.Is(out[6].err, ErrNotFound), "not found"},
		{out[7].err != nil && !IsUnavailable(out[7].err), "panic in Decide"},
		{errors.As(out[8].err, &ce) && ce.Current == 2, "create of an existing aggregate"},
	}
	for i, c := range checks {
		if !c.ok {
			t.Errorf("command %d (%s): %+v", i, c.what, out[i])
		}
	}
	if st := b.Stats(); st.Fallbacks != 0 {
		t.Errorf("stats %+v: the batch should have committed as one", st)
	}
	// The events table holds exactly what the three successful commands appended.
	if n := count(t, pg, `SELECT count(*) FROM events`); n != 2+3 {
		t.Errorf("%d events, want 2 seeded + 3", n)
	}
	if n := count(t, pg, `SELECT count(*) FROM outbox`); n != 2+3 {
		t.Errorf("%d outbox rows, want 5", n)
	}
	for id, want := range map[string]int{x: 2, y: 2, created: 1} {
		if v := count(t, pg, `SELECT version FROM aggregates WHERE aggregate_id = $1`, id); v != want {
			t.Errorf("head of %s at %d, want %d", id, v, want)
		}
	}
	// The failed command's key was given back: the same key runs again.
	if n := count(t, pg, `SELECT count(*) FROM idempotency_keys WHERE key = 'k-illegal'`); n != 0 {
		t.Error("a failed command kept its idempotency key")
	}
	if n := count(t, pg, `SELECT count(*) FROM idempotency_keys WHERE key = 'k-ok' AND status_code = 200`); n != 1 {
		t.Error("the keyed command's answer was not stored")
	}
	// A replay and a reused key in the next batch.
	out = runOne(t, b,
		Command{AggregateType: "order", AggregateID: y, ExpectedVersion: 1, Idempotency: keyOf("k-ok", 2), Decide: appendOne("OrderShipped")},
		Command{AggregateType: "order", AggregateID: x, ExpectedVersion: AnyVersion, Idempotency: keyOf("k-ok", 9), Decide: appendOne("OrderShipped")},
		Command{AggregateType: "order", AggregateID: y, ExpectedVersion: AnyVersion, Idempotency: keyOf("k-illegal", 1), Decide: appendOne("OrderPaid")},
	)
	if !out[0].res.Replayed || string(out[0].res.Body) != `{"version":2}` || out[0].err != nil {
		t.Errorf("replay: %+v", out[0])
	}
	if !errors.Is(out[1].err, ErrIdempotencyMismatch) {
		t.Errorf("reused key: %+v", out[1])
	}
	if out[2].err != nil || out[2].res.Version != 3 {
		t.Errorf("retry of the failed keyed command: %+v", out[2])
	}
}

func TestBatchSameAggregateInArrivalOrder(t *testing.T) {
	pg := testenv.Postgres(t)
	s := newStore(pg.Pool, testenv.Name(t))
	defer s.Close()
	ctx := context.Background()
	id := uuid.NewString()
	if _, err := s.Create(ctx, "product", id, []NewEvent{ev("ProductCreated", `{}`)}); err != nil {
		t.Fatal(err)
	}
	upd := func(expected int64) Command {
		return Command{AggregateType: "product", AggregateID: id, ExpectedVersion: expected, Decide: appendOne("ProductUpdated")}
	}
	fresh := uuid.NewString()
	out := runOne(t, unstarted(t, s),
		upd(AnyVersion), // 2
		upd(2),          // 3: sees the first command's event
		upd(2),          // conflict: at 3 by now
		Command{AggregateType: "product", AggregateID: fresh, ExpectedVersion: NoAggregate, Decide: appendOne("ProductCreated")},
		upd(3), // 4
		Command{AggregateType: "product", AggregateID: fresh, ExpectedVersion: 1, Decide: appendOne("ProductUpdated")}, // 2 of fresh
		upd(AnyVersion), // 5
	)
	wantVersion := []int64{2, 3, -1, 1, 4, 2, 5}
	for i, w := range wantVersion {
		if w < 0 {
			var ce *ConflictError
			if !errors.As(out[i].err, &ce) || ce.Current != 3 {
				t.Errorf("command %d: %+v, want a conflict at 3", i, out[i])
			}
			continue
		}
		if out[i].err != nil || out[i].res.Version != w {
			t.Errorf("command %d: %+v, want version %d", i, out[i], w)
		}
	}
	// Each Decide saw the history including the batch's earlier commands,
	// and the outbox ids follow the versions.
	rows, err := pg.Pool.Query(ctx, `SELECT e.version, e.payload->>'seen' FROM events e JOIN outbox o USING (global_position)
WHERE e.aggregate_id = $1 ORDER BY o.id`, id)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	want := int64(1)
	for rows.Next() {
		var v int64
		var seen *string
		if err := rows.Scan(&v, &seen); err != nil {
			t.Fatal(err)
		}
		if v != want || (v > 1 && (seen == nil || *seen != fmt.Sprint(v-1))) {
			t.Errorf("outbox order: version %d (saw %v) where %d was due", v, seen, want)
		}
		want++
	}
	if want != 6 {
		t.Errorf("%d events, want 5", want-1)
	}
}

// testLog logs to the test's output.
func testLog(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

func startBatcher(t *testing.T, s *Store, cfg BatchConfig, hook func(context.Context, uint32) error) *Batcher {
	t.Helper()
	b, err := newBatcher(s, cfg, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	b.beforeCommit = hook
	if hook != nil {
		b.direct = nil // every command through a batch, and so the hook
	}
	b.start()
	t.Cleanup(b.Close)
	return b
}

func TestBatchIdempotencyRace(t *testing.T) {
	pg := testenv.Postgres(t)
	s := newStore(pg.Pool, testenv.Name(t))
	defer s.Close()
	cfg := DefaultBatchConfig()
	cfg.Committers = 3
	b := startBatcher(t, s, cfg, nil)
	ctx := context.Background()
	id := uuid.NewString()
	if _, err := s.Create(ctx, "order", id, []NewEvent{ev("OrderCreated", `{}`)}); err != nil {
		t.Fatal(err)
	}
	const n = 48
	var wg sync.WaitGroup
	out := make([]outcome, n)
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			// Other commands in between make real batches.
			_, _ = b.Execute(ctx, Command{AggregateType: "order", AggregateID: uuid.NewString(), ExpectedVersion: NoAggregate,
				Events: []NewEvent{ev("OrderCreated", `{}`)}})
			out[i].res, out[i].err = b.Execute(ctx, Command{AggregateType: "order", AggregateID: id, ExpectedVersion: AnyVersion,
				Idempotency: keyOf("race", 1), Decide: appendOne("OrderPaid")})
		})
	}
	close(start)
	wg.Wait()
	fresh := 0
	for i, o := range out {
		if o.err != nil {
			t.Fatalf("command %d: %v", i, o.err)
		}
		if string(o.res.Body) != `{"version":2}` || o.res.Status != 200 {
			t.Errorf("command %d answered %d %s, want the one stored answer", i, o.res.Status, o.res.Body)
		}
		if !o.res.Replayed {
			fresh++
		}
	}
	if fresh != 1 {
		t.Errorf("%d commands appended, want exactly 1", fresh)
	}
	if c := count(t, pg, `SELECT count(*) FROM events WHERE aggregate_id = $1`, id); c != 2 {
		t.Errorf("%d events on the aggregate, want 2", c)
	}
	if st := b.Stats(); st.Batches >= st.Commands {
		t.Errorf("stats %+v: no two commands shared a batch", st)
	}
}

func TestBatchManyWritersFewAggregates(t *testing.T) {
	pg := testenv.Postgres(t)
	s := newStore(pg.Pool, testenv.Name(t))
	defer s.Close()
	cfg := DefaultBatchConfig()
	cfg.Committers = 4
	cfg.MaxBatch = 16
	b := startBatcher(t, s, cfg, nil)
	ctx := context.Background()
	ids := []string{uuid.NewString(), uuid.NewString(), uuid.NewString()}
	const writers, each = 24, 20
	var wg sync.WaitGroup
	var mu sync.Mutex
	acked := map[string]int{}
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				id := ids[(w+i)%len(ids)]
				cmd := Command{AggregateType: "product", AggregateID: id, ExpectedVersion: AnyVersion, Decide: appendOne("ProductUpdated")}
				if i%5 == 0 { // optimistic: read, then expect; conflicts allowed
					cur, _ := s.current(ctx, "product", id)
					cmd.ExpectedVersion = max(cur, 1)
				}
				res, err := b.Execute(ctx, cmd)
				var ce *ConflictError
				if errors.As(err, &ce) || errors.Is(err, ErrNotFound) {
					continue
				}
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				acked[id]++
				mu.Unlock()
				if len(res.Appended) != 1 || res.Appended[0].Version != res.Version {
					t.Errorf("result %+v", res)
				}
			}
		})
	}
	wg.Wait()
	for _, id := range ids {
		// No lost update: the head, the number of events and the answers
		// agree, and versions are 1..n without a gap or a repeat.
		n := count(t, pg, `SELECT count(*) FROM events WHERE aggregate_id = $1`, id)
		gaps := count(t, pg, `SELECT count(*) FROM (SELECT version, row_number() OVER (ORDER BY version) AS r FROM events WHERE aggregate_id = $1) x WHERE version <> r`, id)
		head := count(t, pg, `SELECT version FROM aggregates WHERE aggregate_id = $1`, id)
		unordered := count(t, pg, `SELECT count(*) FROM (SELECT o.version, lag(o.version) OVER (ORDER BY o.id) AS prev FROM outbox o WHERE aggregate_id = $1) x WHERE version <> prev + 1`, id)
		if n != acked[id] || head != n || gaps != 0 || unordered != 0 {
			t.Errorf("%s: %d events, %d acked, head %d, %d versions out of place, %d outbox rows out of order", id, n, acked[id], head, gaps, unordered)
		}
	}
	t.Logf("stats %+v", b.Stats())
}

// TestBatchCrash breaks a batch's connection between its writes and its
// COMMIT (the backend killed, or the TCP connection cut), then cuts the
// connection at random moments under load: no acknowledged command is
// missing, every command committed whole or not at all, and every command
// of a broken batch got an error.
func TestBatchCrash(t *testing.T) {
	pg := testenv.Postgres(t)
	u, err := url.Parse(pg.URL)
	if err != nil {
		t.Fatal(err)
	}
	proxy := testenv.NewProxy(t, u.Host)
	u.Host = proxy.Addr()
	q := u.Query()
	q.Set("connect_timeout", "2")
	u.RawQuery = q.Encode()
	pool, err := pgxpool.New(context.Background(), u.String())
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	s := newStore(pool, testenv.Name(t))
	defer s.Close()
	ctx := context.Background()

	var mu sync.Mutex
	var killed []string
	hook := func(mode string) func(context.Context, uint32) error {
		return func(_ context.Context, pid uint32) error {
			mu.Lock()
			defer mu.Unlock()
			switch mode {
			case "terminate":
				// Wait until the backend is gone, so the COMMIT finds it dead.
				var gone bool
				err := pg.Pool.QueryRow(context.Background(), `SELECT pg_terminate_backend($1, 5000)`, int(pid)).Scan(&gone)
				if err == nil && !gone {
					err = fmt.Errorf("backend %d not terminated", pid)
				}
				killed = append(killed, mode)
				return err
			case "cut":
				proxy.Cut()
				proxy.Restore()
				killed = append(killed, mode)
			}
			return nil
		}
	}
	for _, mode := range []string{"terminate", "cut"} {
		b := startBatcher(t, s, DefaultBatchConfig(), hook(mode))
		res := runCrashLoad(t, b, 16, 4)
		b.Close()
		for _, r := range res {
			if r.err == nil {
				t.Errorf("%s: a command of a batch whose COMMIT never ran was acknowledged", mode)
			} else if !IsUnavailable(r.err) {
				t.Errorf("%s: %v, want an unavailable (retryable) error", mode, r.err)
			}
		}
		checkAllOrNothing(t, pg, res)
	}
	if len(killed) == 0 {
		t.Fatal("the hook never ran")
	}

	// Random cuts under load: some land in flight, between claim and
	// commit, or on the COMMIT itself.
	b := startBatcher(t, s, DefaultBatchConfig(), nil)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Duration(50+rand.IntN(100)) * time.Millisecond):
				proxy.Cut()
				time.Sleep(time.Millisecond)
				proxy.Restore()
			}
		}
	}()
	res := runCrashLoad(t, b, 16, 40)
	close(stop)
	<-done
	checkAllOrNothing(t, pg, res)
	ok := 0
	for _, r := range res {
		if r.err == nil {
			ok++
		}
	}
	t.Logf("random cuts: %d of %d acknowledged; stats %+v", ok, len(res), b.Stats())
	_ = ctx
}

type crashResult struct {
	id  string
	err error
}

// runCrashLoad runs writers × each commands of two events each on fresh
// aggregates.
func runCrashLoad(t *testing.T, b *Batcher, writers, each int) []crashResult {
	t.Helper()
	var mu sync.Mutex
	var out []crashResult
	var wg sync.WaitGroup
	for range writers {
		wg.Go(func() {
			for range each {
				id := uuid.NewString()
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				_, err := b.Execute(ctx, Command{AggregateType: "order", AggregateID: id, ExpectedVersion: NoAggregate,
					Events:   []NewEvent{ev("OrderCreated", `{}`), ev("OrderPaid", `{}`)},
					Metadata: envelope.Metadata{RequestID: id}})
				cancel()
				mu.Lock()
				out = append(out, crashResult{id, err})
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return out
}

func checkAllOrNothing(t *testing.T, pg *testenv.PG, res []crashResult) {
	t.Helper()
	ids := make([]string, len(res))
	for i, r := range res {
		ids[i] = r.id
	}
	rows, err := pg.Pool.Query(context.Background(),
		`SELECT aggregate_id, count(*) FROM events WHERE aggregate_id = ANY($1) GROUP BY aggregate_id`, ids)
	if err != nil {
		t.Fatal(err)
	}
	stored := map[string]int{}
	for rows.Next() {
		var id string
		var n int
		if err := rows.Scan(&id, &n); err != nil {
			t.Fatal(err)
		}
		stored[id] = n
	}
	rows.Close()
	for _, r := range res {
		n := stored[r.id]
		if r.err == nil && n != 2 {
			t.Errorf("%s acknowledged with %d of 2 events stored", r.id, n)
		}
		if n != 0 && n != 2 {
			t.Errorf("%s: %d of 2 events stored", r.id, n)
		}
		if r.err != nil && n == 2 && !IsUnavailable(r.err) {
			t.Errorf("%s committed but answered a definite error: %v", r.id, r.err)
		}
	}
	if b, _ := json.Marshal(stored); len(b) == 0 {
		t.Fatal("unreachable")
	}
}

// BenchmarkExecute compares one transaction per command with group commit
// on the write benchmark's mix (half updates of 200 products, half
// creates), with 1 and 64 concurrent callers.
func BenchmarkExecute(b *testing.B) {
	pg := testenv.Postgres(b)
	s := newStore(pg.Pool, testenv.Name(b))
	defer s.Close()
	ids := make([]string, 200)
	for i := range ids {
		ids[i] = uuid.NewString()
		if _, err := s.Create(context.Background(), "product", ids[i], []NewEvent{ev("ProductCreated", `{"n":0}`)}); err != nil {
			b.Fatal(err)
		}
	}
	bt, err := newBatcher(s, DefaultBatchConfig(), nil)
	if err != nil {
		b.Fatal(err)
	}
	bt.start()
	defer bt.Close()
	run := func(exec func(context.Context, Command) (Result, error)) func(int) error {
		return func(i int) error {
			cmd := Command{AggregateType: "product", AggregateID: uuid.NewString(), ExpectedVersion: NoAggregate,
				Decide: func([]Event) ([]NewEvent, error) { return []NewEvent{ev("ProductCreated", `{"n":1}`)}, nil }}
			if i%2 == 0 {
				cmd.AggregateID, cmd.ExpectedVersion = ids[rand.IntN(len(ids))], AnyVersion
				cmd.Decide = func([]Event) ([]NewEvent, error) { return []NewEvent{ev("ProductUpdated", `{"n":2}`)}, nil }
			}
			_, err := exec(context.Background(), cmd)
			return err
		}
	}
	for _, side := range []struct {
		name string
		op   func(int) error
	}{{"store", run(s.Execute)}, {"batcher", run(bt.Execute)}} {
		for _, clients := range []int{1, 64} {
			b.Run(fmt.Sprintf("%s/clients=%d", side.name, clients), func(b *testing.B) {
				b.SetParallelism(clients) // × GOMAXPROCS
				var n atomic.Int64
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if err := side.op(int(n.Add(1))); err != nil {
							b.Error(err)
							return
						}
					}
				})
			})
		}
	}
}
