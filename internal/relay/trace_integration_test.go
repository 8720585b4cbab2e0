//go:build integration

package relay

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kgo"

	"cqrsflow/internal/outbox"
	"cqrsflow/internal/testenv"
)

// appendWithMetadataSQL is appendSQL with the event's metadata given.
const appendWithMetadataSQL = `WITH a AS (
	INSERT INTO aggregates (aggregate_type, aggregate_id, version) VALUES ($1, $2, 1)
	ON CONFLICT (aggregate_type, aggregate_id) DO UPDATE SET version = aggregates.version + 1, updated_at = clock_timestamp()
	RETURNING version
), e AS (
	INSERT INTO events (event_id, aggregate_type, aggregate_id, version, event_type, schema_version, payload, metadata, occurred_at)
	SELECT gen_random_uuid(), $1, $2, a.version, 'E', 1, '{"n":1}'::jsonb, $3::jsonb, clock_timestamp() FROM a
	RETURNING *
)
INSERT INTO outbox (` + outbox.Columns + `) SELECT ` + outbox.FromEvents + ` FROM e ev`

// Outbox rows whose stored trace context is malformed (not a string, not
// a trace context, zero ids) are published like any other, without trace
// headers; a valid one travels as traceparent/tracestate. Nothing is
// dead-lettered, nothing stays in the outbox.
func TestRelayTraceMetadataFromOutbox(t *testing.T) {
	e := newEnv(t, testenv.KafkaBrokers())
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const valid = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	metas := map[string]string{
		"valid":   `{"correlation_id":"it","traceparent":"` + valid + `","tracestate":"v=1"}`,
		"number":  `{"correlation_id":"it","traceparent":12,"tracestate":false}`,
		"object":  `{"correlation_id":"it","traceparent":{"a":1},"tracestate":[1]}`,
		"garbage": `{"correlation_id":"it","traceparent":"garbage","tracestate":"v=1"}`,
		"zeros":   `{"correlation_id":"it","traceparent":"00-00000000000000000000000000000000-0000000000000000-01"}`,
	}
	err := pgx.BeginFunc(ctx, e.pg.Pool, func(tx pgx.Tx) error {
		for id, m := range metas {
			if _, err := tx.Exec(ctx, appendWithMetadataSQL, "order", id, m); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	startRelay(t, e, "trace", nil, 0)

	cl, err := kgo.NewClient(kgo.SeedBrokers(e.brokers...), kgo.ConsumeTopics(e.topics...),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	got := map[string]map[string]string{}
	for len(got) < len(metas) && ctx.Err() == nil {
		fs := cl.PollFetches(ctx)
		fs.EachRecord(func(r *kgo.Record) { got[string(r.Key)] = headerMap(r.Headers) })
	}
	if len(got) != len(metas) {
		t.Fatalf("published %d of %d rows: %v", len(got), len(metas), got)
	}
	for id, h := range got {
		wantParent, wantState := "", ""
		if id == "valid" {
			wantParent, wantState = valid, "v=1"
		}
		if h["traceparent"] != wantParent || h["tracestate"] != wantState {
			t.Errorf("%s: headers %v", id, h)
		}
	}
	waitFor(t, "outbox empty", 20*time.Second, func() bool { return outboxCount(ctx, t, e.pg.Pool) == 0 })
	var dead int
	if err := e.pg.Pool.QueryRow(ctx, `SELECT count(*) FROM outbox_dead_letters`).Scan(&dead); err != nil || dead != 0 {
		t.Fatalf("dead letters %d (%v)", dead, err)
	}
}
