package relay

import (
	"context"
	"fmt"
	mrand "math/rand/v2"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"cqrsflow/internal/eventstore"
	"cqrsflow/internal/outbox"
)

// The part's only uses of the event store: the prefill derives the outbox
// rows from the events with the store's own SQL, and the lag phase appends
// as the API does.

// prefillOutbox COPYs n events (10 versions per aggregate, interleaved)
// into events and their outbox rows in global_position order.
func prefillOutbox(ctx context.Context, pool *pgxpool.Pool, n, payloadBytes int) error {
	aggs := max(1, n/10)
	ids := make([]string, aggs)
	for i := range ids {
		ids[i] = uuid.NewString()
	}
	desc := strings.Repeat("x", max(0, payloadBytes-70))
	meta := []byte(`{"correlation_id":"bench","request_id":"bench"}`)
	now := time.Now()
	i := 0
	src := pgx.CopyFromFunc(func() ([]any, error) {
		if i >= n {
			return nil, nil
		}
		a := i % aggs
		v := int64(i/aggs) + 1
		payload := fmt.Sprintf(`{"name":"p-%d","description":"%s","price":19.99,"stock":%d}`, i, desc, i%100)
		row := []any{uuid.New(), aggTypes[a%2], ids[a], v, "ProductUpdated", 1, []byte(payload), meta, now}
		i++
		return row, nil
	})
	cols := []string{"event_id", "aggregate_type", "aggregate_id", "version", "event_type", "schema_version", "payload", "metadata", "occurred_at"}
	if _, err := pool.CopyFrom(ctx, pgx.Identifier{"events"}, cols, src); err != nil {
		return fmt.Errorf("copying events: %w", err)
	}
	if _, err := pool.Exec(ctx, outbox.CopyFromEventsSQL); err != nil {
		return fmt.Errorf("filling outbox: %w", err)
	}
	if _, err := pool.Exec(ctx, `ANALYZE events; ANALYZE outbox`); err != nil {
		return fmt.Errorf("analyze: %w", err)
	}
	return nil
}

// appender appends one ProductUpdated to a random one of a fixed set of
// aggregates per call, through the event store.
type appender struct {
	store   *eventstore.Store
	ids     []string
	payload []byte
}

func newAppender(pool *pgxpool.Pool, aggregates, payloadBytes int) *appender {
	ids := make([]string, aggregates)
	for i := range ids {
		ids[i] = uuid.NewString()
	}
	payload := []byte(fmt.Sprintf(`{"name":"bench","description":%q,"price":19.99,"stock":5}`, strings.Repeat("d", max(0, payloadBytes-60))))
	return &appender{store: eventstore.New(pool), ids: ids, payload: payload}
}

// append is a loadgen.Op.
func (a *appender) append(ctx context.Context, _ int) error {
	i := mrand.IntN(len(a.ids))
	_, err := a.store.Append(ctx, aggTypes[i%2], a.ids[i], eventstore.AnyVersion,
		[]eventstore.NewEvent{{Type: "ProductUpdated", SchemaVersion: 1, Payload: a.payload}})
	return err
}

func (a *appender) close() { a.store.Close() }
