package eventstore

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"cqrsflow/internal/outbox"
)

// notifier sends NOTIFY <channel> '<shards>' (outbox.NotifyChannel and
// outbox.NotifyPayload) after commits, outside the append transactions:
// one notification per round, naming every shard that received rows
// since the previous round.
type notifier struct {
	pool    *pgxpool.Pool
	channel string
	mu      sync.Mutex
	pending [outbox.ShardCount]bool
	any     bool
	wake    chan struct{}
	stop    chan struct{}
	done    chan struct{}
	once    sync.Once
	failed  atomic.Int64 // rounds that could not be sent (the relay's poll covers them)
}

func startNotifier(pool *pgxpool.Pool, channel string) *notifier {
	n := &notifier{pool: pool, channel: channel, wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	go n.run()
	return n
}

func (n *notifier) add(shard int) {
	n.mu.Lock()
	n.pending[uint(shard)%outbox.ShardCount] = true
	n.any = true
	n.mu.Unlock()
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

// addAll adds the shards of one batch with one wake-up.
func (n *notifier) addAll(shards []int) {
	if len(shards) == 0 {
		return
	}
	n.mu.Lock()
	for _, s := range shards {
		n.pending[uint(s)%outbox.ShardCount] = true
	}
	n.any = true
	n.mu.Unlock()
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

func (n *notifier) take() []int {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.any {
		return nil
	}
	var shards []int
	for i, p := range n.pending {
		if p {
			shards = append(shards, i)
			n.pending[i] = false
		}
	}
	n.any = false
	return shards
}

// notifyGap is the least time between two notify rounds: under load,
// commits within it share one round (one small transaction instead of one
// per commit); a relay wakes at most this much later.
const notifyGap = 5 * time.Millisecond

func (n *notifier) run() {
	defer close(n.done)
	for {
		select {
		case <-n.wake:
		case <-n.stop:
			n.send(n.take())
			return
		}
		n.send(n.take())
		select {
		case <-time.After(notifyGap):
		case <-n.stop:
			n.send(n.take())
			return
		}
	}
}

func (n *notifier) send(shards []int) {
	if len(shards) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := n.pool.Exec(ctx, `SELECT pg_notify($1, $2)`, n.channel, outbox.NotifyPayload(shards...)); err != nil {
		n.failed.Add(1)
	}
}

func (n *notifier) close() {
	n.once.Do(func() { close(n.stop) })
	<-n.done
}
