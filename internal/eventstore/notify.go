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
	failed  atomic.Int64  // rounds that could not be sent (the relay's poll covers them)
	every   time.Duration // the least time between two rounds
}

func startNotifier(pool *pgxpool.Pool, channel string, every time.Duration) *notifier {
	n := &notifier{pool: pool, channel: channel, every: min(max(every, 0), MaxNotifyInterval),
		wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
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

// DefaultNotifyInterval is the least time between two notify rounds:
// commits within it share one round (one notification instead of one per
// commit). The first commit after a quiet interval is notified at once;
// a commit right after a round waits for the next one, at most this long.
//
// It matches the relay's default WAKE_LINGER: a woken relay waits that
// long before it claims anyway, so rounds closer together mostly wake it
// while it lingers or publishes, and every wake-up costs it CPU. Measured
// side by side (`bench relay -phases lag,steady -steady-rates 1000,2000`,
// BENCHMARKS.md): at 1000 writes/s, 5 ms between rounds (200 per second)
// cost the relay and its PostgreSQL backends 154.5 and 157.5 µs per event,
// 25 ms cost 124.0 and 107.0 µs, with the same lag-phase p50 (21.9–25.6
// vs 25.2–27.0 ms); in `bench pipeline` at 1000 writes/s the mean
// commit → Kafka ack grew by ~6 ms (31.7–34.8 vs 35.7–41.3 ms).
const DefaultNotifyInterval = 25 * time.Millisecond

// MaxNotifyInterval bounds the interval: beyond it a relay would as well
// rely on its poll.
const MaxNotifyInterval = time.Second

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
		if n.every == 0 {
			continue
		}
		select {
		case <-time.After(n.every):
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
