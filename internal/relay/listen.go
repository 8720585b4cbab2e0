package relay

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"cqrsflow/internal/backoff"
	"cqrsflow/internal/outbox"
)

// listenLoop wakes the publish workers on every NOTIFY on
// outbox.NotifyChannel, on a dedicated connection, reconnecting with
// backoff. The workers' poll timer covers missed notifications.
func (r *Relay) listenLoop(ctx context.Context) {
	bo := r.backoff()
	for ctx.Err() == nil {
		err := r.listenOnce(ctx)
		if ctx.Err() != nil {
			return
		}
		d := bo.Next()
		r.log.Warn("LISTEN connection failed; polling meanwhile", "err", err, "backoff", d.String())
		backoff.Sleep(ctx, d)
	}
}

func (r *Relay) listenOnce(ctx context.Context) error {
	conn, err := pgx.ConnectConfig(ctx, r.pool.Config().ConnConfig.Copy())
	if err != nil {
		return fmt.Errorf("connecting for LISTEN: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "LISTEN "+outbox.NotifyChannel); err != nil {
		return fmt.Errorf("LISTEN %s: %w", outbox.NotifyChannel, err)
	}
	r.listening.Store(true)
	defer r.listening.Store(false)
	r.poke() // something may have been appended while not listening
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return fmt.Errorf("waiting for notification: %w", err)
		}
		r.wakeFor(n.Payload)
	}
}

// poke wakes every publish loop.
func (r *Relay) poke() {
	for _, c := range r.wake {
		select {
		case c <- struct{}{}:
		default:
		}
	}
}

// wakeFor wakes the running loops of the shards a notification payload
// names, or every loop for a payload that is not a list of shards.
func (r *Relay) wakeFor(payload string) {
	shards, ok := outbox.ParseNotifyPayload(payload)
	if !ok {
		r.poke()
		return
	}
	for _, s := range shards {
		select {
		case r.wake[r.loopOf(s)] <- struct{}{}:
		default:
		}
	}
}
