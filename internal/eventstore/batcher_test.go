package eventstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func keyed(id, key string) Command {
	c := Command{AggregateType: "t", AggregateID: id, ExpectedVersion: AnyVersion, Events: []NewEvent{{Type: "E"}}}
	if key != "" {
		c.Idempotency = &Idempotency{Key: key, Principal: "p"}
	}
	return c
}

func pend(ctx context.Context, cmd Command) *pending {
	return &pending{ctx: ctx, cmd: cmd, done: make(chan outcome, 1)}
}

func TestSplitBoundsAndKeys(t *testing.T) {
	ctx := context.Background()
	var reqs []*pending
	for i, k := range []string{"a", "", "a", "b", "", "a", "c"} {
		reqs = append(reqs, pend(ctx, keyed(fmt.Sprint(i), k)))
	}
	batch, carry := split(reqs, 4)
	ids := func(ps []*pending) (s string) {
		for _, p := range ps {
			s += p.cmd.AggregateID
		}
		return s
	}
	// 2 repeats key a: carried; the batch fills up with 0,1,3,4; 5 (a
	// again) and 6 (over the bound) follow in order.
	if got, want := ids(batch), "0134"; got != want {
		t.Errorf("batch %s, want %s", got, want)
	}
	if got, want := ids(carry), "256"; got != want {
		t.Errorf("carry %s, want %s", got, want)
	}
	// Keys of other principals do not collide.
	other := keyed("x", "a")
	other.Idempotency.Principal = "q"
	batch, carry = split([]*pending{pend(ctx, keyed("y", "a")), pend(ctx, other)}, 8)
	if len(batch) != 2 || len(carry) != 0 {
		t.Errorf("same key, other principal: batch %d carry %d", len(batch), len(carry))
	}
}

func TestBatchConfigValidate(t *testing.T) {
	if err := DefaultBatchConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	bad := BatchConfig{MaxBatch: 0, Committers: 0, Linger: -time.Second, Timeout: 0}
	err := bad.Validate()
	for _, want := range []string{"max batch", "committers", "linger", "timeout"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate(%+v) = %v, want it to name %s", bad, err, want)
		}
	}
	if _, err := NewBatcher(nil, BatchConfig{MaxBatch: maxBatchLimit + 1, Committers: 1, Timeout: time.Second}, nil, prometheus.NewRegistry()); err == nil {
		t.Error("a batch above the limit was accepted")
	}
}

// fakeBatcher has one committer whose batches block until release is
// closed (the first one) and are recorded.
type fakeBatcher struct {
	*Batcher
	mu      sync.Mutex
	sizes   []int
	started chan struct{}
	release chan struct{}
	once    sync.Once
}

func (f *fakeBatcher) letGo() { f.once.Do(func() { close(f.release) }) }

func newFake(t *testing.T, cfg BatchConfig) *fakeBatcher {
	t.Helper()
	b, err := newBatcher(nil, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeBatcher{Batcher: b, started: make(chan struct{}, 100), release: make(chan struct{})}
	b.exec = func(batch []*pending) {
		f.mu.Lock()
		f.sizes = append(f.sizes, len(batch))
		first := len(f.sizes) == 1
		f.mu.Unlock()
		f.started <- struct{}{}
		if first {
			<-f.release
		}
		for _, p := range batch {
			p.answer(Result{Version: int64(len(batch))}, nil)
		}
	}
	b.start()
	t.Cleanup(func() { f.letGo(); b.Close() })
	return f
}

func (f *fakeBatcher) batchSizes() []int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]int(nil), f.sizes...)
}

func TestBatcherIdleGoesAtOnceThenCoalesces(t *testing.T) {
	// The queue holds 8 (MaxBatch × Committers): two of the ten commands
	// below wait in Execute's send until the committer drains the queue.
	// Linger after the full batch gives those two time to be queued, so
	// they go together (without it, the committer may take the first
	// of them alone: CI saw [1 8 1 1]).
	f := newFake(t, BatchConfig{MaxBatch: 8, Committers: 1, Linger: time.Second, Timeout: 5 * time.Second})
	ctx := context.Background()
	first := make(chan error, 1)
	go func() { _, err := f.Execute(ctx, keyed("0", "")); first <- err }()
	select {
	case <-f.started: // went alone, at once
	case <-time.After(2 * time.Second):
		t.Fatal("the first command did not go while the committer was idle")
	}
	// Ten commands arrive while the first batch is in flight: they form
	// the next batches (8, then 2), not ten transactions.
	var wg sync.WaitGroup
	for i := range 10 {
		wg.Go(func() {
			if _, err := f.Execute(ctx, keyed(fmt.Sprint(i+1), "")); err != nil {
				t.Error(err)
			}
		})
	}
	waitQueued(t, f.Batcher, 10)
	f.letGo()
	wg.Wait()
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if got := f.batchSizes(); len(got) != 3 || got[0] != 1 || got[1] != 8 || got[2] != 2 {
		t.Errorf("batch sizes %v, want [1 8 2]", got)
	}
	if st := f.Stats(); st.Batches != 3 || st.Commands != 11 {
		t.Errorf("stats %+v", st)
	}
}

func waitQueued(t *testing.T, b *Batcher, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	n = min(n, cap(b.reqs)) // the rest wait to be queued
	for len(b.reqs) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d commands queued", len(b.reqs), n)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestBatcherRepeatedKeyGoesToNextBatch(t *testing.T) {
	f := newFake(t, BatchConfig{MaxBatch: 8, Committers: 1, Timeout: time.Second})
	ctx := context.Background()
	go func() { _, _ = f.Execute(ctx, keyed("0", "")) }()
	<-f.started
	var wg sync.WaitGroup
	for i := range 3 {
		wg.Go(func() { _, _ = f.Execute(ctx, keyed(fmt.Sprint(i), "same")) })
	}
	waitQueued(t, f.Batcher, 3)
	f.letGo()
	wg.Wait()
	if got := f.batchSizes(); len(got) != 4 || got[1] != 1 || got[2] != 1 || got[3] != 1 {
		t.Errorf("batch sizes %v, want [1 1 1 1]: one key, one command per batch", got)
	}
}

func TestBatcherCallerGivesUp(t *testing.T) {
	f := newFake(t, BatchConfig{MaxBatch: 8, Committers: 1, Timeout: time.Second})
	go func() { _, _ = f.Execute(context.Background(), keyed("0", "")) }()
	<-f.started
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { _, err := f.Execute(ctx, keyed("1", "")); errc <- err }()
	waitQueued(t, f.Batcher, 1)
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	f.letGo()
	// The abandoned command is dropped before it reaches the database.
	time.Sleep(50 * time.Millisecond)
	if got := f.batchSizes(); len(got) != 1 {
		t.Errorf("batch sizes %v: the cancelled command was sent", got)
	}
}

func TestBatcherCloseDrainsThenRefuses(t *testing.T) {
	f := newFake(t, BatchConfig{MaxBatch: 4, Committers: 1, Timeout: time.Second})
	ctx := context.Background()
	go func() { _, _ = f.Execute(ctx, keyed("0", "")) }()
	<-f.started
	errs := make(chan error, 6)
	for i := range 6 {
		go func() { _, err := f.Execute(ctx, keyed(fmt.Sprint(i+1), "")); errs <- err }()
	}
	waitQueued(t, f.Batcher, 6)
	closed := make(chan struct{})
	go func() { f.Close(); close(closed) }()
	f.letGo()
	<-closed
	for range 6 {
		if err := <-errs; err != nil {
			t.Errorf("queued before Close: %v", err)
		}
	}
	if _, err := f.Execute(ctx, keyed("x", "")); !errors.Is(err, ErrClosed) || !IsUnavailable(err) {
		t.Errorf("after Close: %v, want ErrClosed (unavailable)", err)
	}
	if _, err := f.Execute(ctx, Command{AggregateType: "t"}); err == nil || errors.Is(err, ErrClosed) {
		t.Errorf("a command without an id: %v, want it refused before queueing", err)
	}
}

func TestBatcherLingersOnlyAfterAFullBatch(t *testing.T) {
	f := newFake(t, BatchConfig{MaxBatch: 2, Committers: 1, Linger: 200 * time.Millisecond, Timeout: time.Second})
	f.letGo()
	start := time.Now()
	if _, err := f.Execute(context.Background(), keyed("0", "")); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Errorf("an idle command took %v: linger must not apply", d)
	}
}

func TestBatcherSurvivesAPanickingBatch(t *testing.T) {
	b, err := newBatcher(nil, BatchConfig{MaxBatch: 4, Committers: 1, Timeout: time.Second}, nil)
	if err != nil {
		t.Fatal(err)
	}
	calls := 0
	b.exec = func(batch []*pending) {
		calls++
		if calls == 1 {
			panic("boom")
		}
		for _, p := range batch {
			p.answer(Result{Version: 1}, nil)
			p.answer(Result{Version: 2}, nil) // a second answer is dropped, never blocks
		}
	}
	b.start()
	defer b.Close()
	if _, err := b.Execute(context.Background(), keyed("0", "")); !errors.Is(err, ErrCommitUnknown) {
		t.Fatalf("err = %v, want ErrCommitUnknown", err)
	}
	if res, err := b.Execute(context.Background(), keyed("1", "")); err != nil || res.Version != 1 {
		t.Fatalf("after a panic: %+v %v, want the committer still running", res, err)
	}
}

func TestBatcherIdleCommandRunsDirectlyBusyOnesBatch(t *testing.T) {
	f := newFake(t, BatchConfig{MaxBatch: 8, Committers: 1, Timeout: time.Second})
	inDirect := make(chan struct{})
	release := make(chan struct{})
	var directs atomic.Int64
	f.direct = func(ctx context.Context, cmd Command) (Result, error) {
		if directs.Add(1) == 1 {
			close(inDirect)
			<-release
		}
		return Result{Version: -1}, nil
	}
	ctx := context.Background()
	first := make(chan Result, 1)
	go func() { r, _ := f.Execute(ctx, keyed("0", "")); first <- r }()
	<-inDirect // idle: ran on its caller's goroutine, holding the only slot
	var wg sync.WaitGroup
	for i := range 5 {
		wg.Go(func() {
			if r, err := f.Execute(ctx, keyed(fmt.Sprint(i+1), "")); err != nil || r.Version != 5 {
				t.Errorf("queued command: %+v %v, want a batch of 5", r, err)
			}
		})
	}
	waitQueued(t, f.Batcher, 4) // the committer holds one while it waits for the slot
	f.letGo()
	close(release)
	wg.Wait()
	if r := <-first; r.Version != -1 {
		t.Errorf("first command %+v, want the direct path", r)
	}
	if got := f.batchSizes(); len(got) != 1 || got[0] != 5 {
		t.Errorf("batches %v, want one of 5 formed while the slot was busy", got)
	}
	if n := directs.Load(); n != 1 {
		t.Errorf("%d direct runs, want 1", n)
	}
	if st := f.Stats(); st.Batches != 2 || st.Commands != 6 {
		t.Errorf("stats %+v", st)
	}
}
