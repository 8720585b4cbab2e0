package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"cqrsflow/chaos/history"
	"cqrsflow/chaos/nemesis"
	"cqrsflow/internal/outbox"
)

// brokerMaxMessageBytes is the chaos broker's message.max.bytes: the
// stack does not set it (deploy/local/kafka.sh, writeKafkaExtra), so it
// is Kafka's default. The relay's producer refuses records over 1000012
// bytes itself (internal/relay, producerBatchMaxBytes).
const brokerMaxMessageBytes = 1048588

// oversizeEvent is one event an oversize fault appends.
type oversizeEvent struct {
	id            uuid.UUID
	typ           string
	schemaVersion int
	payload       []byte
}

// oversizeEvents are the two events of an oversize fault on an aggregate
// type: v1 (its Created event) with a payload of about n bytes that
// compression does not shrink (random base64 in a text field: Kafka's
// max.message.bytes applies to the compressed batch, the relay
// producer's limit to the uncompressed record), and a normal v2 that
// follows the domain's rules.
func oversizeEvents(aggType, key string, n int) ([2]oversizeEvent, error) {
	blob := make([]byte, n*3/4)
	_, _ = rand.Read(blob)
	big := base64.StdEncoding.EncodeToString(blob)
	var v1, v2 any
	var t1, t2 string
	var s1, s2 int
	switch aggType {
	case "product":
		t1, s1 = "ProductCreated", 2
		v1 = map[string]any{"name": "oversize " + key, "description": big, "price": 1, "currency": "EUR", "stock": 1}
		t2, s2 = "ProductUpdated", 2
		v2 = map[string]any{"name": "oversize " + key, "description": "held behind its dead letter", "price": 2, "currency": "EUR", "stock": 1}
	case "order":
		t1, s1 = "OrderCreated", 1
		v1 = map[string]any{"user_id": big, "product_id": key, "quantity": 1, "total_price": 1}
		t2, s2 = "OrderPaid", 1
		v2 = map[string]any{"payment_reference": key}
	default:
		return [2]oversizeEvent{}, fmt.Errorf("oversize: unknown aggregate type %q", aggType)
	}
	var out [2]oversizeEvent
	for i, e := range []struct {
		typ string
		sv  int
		p   any
	}{{t1, s1, v1}, {t2, s2, v2}} {
		b, err := json.Marshal(e.p)
		if err != nil {
			return out, err
		}
		out[i] = oversizeEvent{id: uuid.New(), typ: e.typ, schemaVersion: e.sv, payload: b}
	}
	return out, nil
}

// parseOversize reads an oversize step's param: bytes=N, N at least the
// smallest size the plan draws.
func parseOversize(param string) (int, error) {
	var n int
	if _, err := fmt.Sscanf(param, "bytes=%d", &n); err != nil || fmt.Sprintf("bytes=%d", n) != param {
		return 0, fmt.Errorf("oversize %q: want bytes=N", param)
	}
	if n < nemesis.OversizeMin || n > 64<<20 {
		return 0, fmt.Errorf("oversize %q: N must be in %d..%d (over the broker's and the producer's limits)", param, nemesis.OversizeMin, 64<<20)
	}
	return n, nil
}

// oversizeSQL appends the fault's events the way the event store does:
// the aggregate's head row first (the transaction takes its xid before
// any outbox id, as the relay's low-water mark requires), then the
// events and their outbox rows in version order, with outbox.Columns and
// outbox.FromEvents as internal/eventstore writes them; the outbox's
// shard is its generated column, read back.
var oversizeSQL = `WITH head AS (
  INSERT INTO aggregates (aggregate_type, aggregate_id, version) VALUES ($1, $2, 2) RETURNING version
), ev AS (
  INSERT INTO events (event_id, aggregate_type, aggregate_id, version, event_type, schema_version, payload, metadata, occurred_at)
  SELECT x.event_id, $1, $2, x.ord, x.event_type, x.schema_version, x.payload, $7::jsonb, clock_timestamp()
  FROM unnest($3::uuid[], $4::text[], $5::int[], $6::jsonb[]) WITH ORDINALITY AS x(event_id, event_type, schema_version, payload, ord)
  WHERE (SELECT version FROM head) = 2 -- after the head row, as the event store appends
  ORDER BY x.ord
  RETURNING *
), ob AS (
  INSERT INTO outbox (` + outbox.Columns + `)
  SELECT ` + outbox.FromEvents + ` FROM ev ORDER BY ev.version
  RETURNING id, shard, event_id
)
SELECT ev.version, ev.event_id::text, ob.id, ob.shard, octet_length(ev.payload::text)
FROM ev JOIN ob ON ob.event_id = ev.event_id ORDER BY ev.version`

// readAppendedSQL reads back what an earlier attempt committed (its
// answer lost to a crash): the events of the aggregate with their outbox
// rows or dead letters.
const readAppendedSQL = `SELECT ev.version, ev.event_id::text,
  COALESCE((SELECT id FROM outbox o WHERE o.event_id = ev.event_id), (SELECT id FROM outbox_dead_letters d WHERE d.event_id = ev.event_id), 0),
  COALESCE((SELECT shard FROM outbox o WHERE o.event_id = ev.event_id), (SELECT shard FROM outbox_dead_letters d WHERE d.event_id = ev.event_id), -1),
  octet_length(ev.payload::text)
FROM events ev WHERE ev.aggregate_type = $1 AND ev.aggregate_id = $2 ORDER BY ev.version`

// oversize appends, in one transaction, an event whose Kafka record is
// larger than the chaos broker's and the relay producer's limits for a
// fresh aggregate (oversize-<run>-<seq>), and a second, normal event of
// the same aggregate. The relay must dead-letter the first after its
// confirmed refusals and hold the second; every other aggregate flows.
// PostgreSQL may be down for another fault: the write is retried with a
// fresh connection, and an attempt whose commit went unanswered is read
// back rather than written twice.
func (p *pipeline) oversize(ctx context.Context, s nemesis.Step, seq int, verified func(string, ...any)) (string, []history.Appended, error) {
	n, err := parseOversize(s.Param)
	if err != nil {
		return "", nil, err
	}
	key := fmt.Sprintf("oversize-%s-%d", p.runID, seq)
	evs, err := oversizeEvents(s.Target, key, n)
	if err != nil {
		return key, nil, err
	}
	meta := fmt.Sprintf(`{"request_id":%q,"correlation_id":%q,"principal":"chaos-nemesis"}`, key, key)
	deadline := time.Now().Add(2 * time.Minute)
	var (
		got     []history.Appended
		lastErr error
		tries   int
	)
	for {
		tries++
		got, err = p.writeOversize(ctx, s.Target, key, evs, meta)
		if err == nil {
			break
		}
		lastErr = err
		if time.Now().After(deadline) || ctx.Err() != nil {
			return key, nil, fmt.Errorf("appending the oversize events (%d tries): %w", tries, lastErr)
		}
		time.Sleep(2 * time.Second)
	}
	if got[0].PayloadBytes <= brokerMaxMessageBytes || got[1].PayloadBytes >= 64<<10 {
		return key, got, fmt.Errorf("stored payloads of %d and %d bytes: want v1 over %d, v2 small", got[0].PayloadBytes, got[1].PayloadBytes, brokerMaxMessageBytes)
	}
	var parts []string
	for i, a := range got {
		a.AggregateType = s.Target
		got[i] = a
		parts = append(parts, fmt.Sprintf("v%d %s outbox id %d shard %d, %d payload bytes", a.Version, a.EventID, a.OutboxID, a.Shard, a.PayloadBytes))
	}
	verified("%s %s committed to the event store (try %d): %s", s.Target, key, tries, strings.Join(parts, "; "))
	return key, got, nil
}

// writeOversize is one try: the transaction, or, when an earlier try
// committed, what it committed.
func (p *pipeline) writeOversize(ctx context.Context, aggType, key string, evs [2]oversizeEvent, meta string) ([]history.Appended, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, p.pgURL)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.Background())
	scan := func(rows pgx.Rows) ([]history.Appended, error) {
		var out []history.Appended
		var a history.Appended
		_, err := pgx.ForEachRow(rows, []any{&a.Version, &a.EventID, &a.OutboxID, &a.Shard, &a.PayloadBytes}, func() error {
			a.AggregateID = key
			out = append(out, a)
			return nil
		})
		return out, err
	}
	rows, err := conn.Query(ctx, readAppendedSQL, aggType, key)
	if err != nil {
		return nil, err
	}
	if prev, err := scan(rows); err != nil {
		return nil, err
	} else if len(prev) > 0 {
		if len(prev) != 2 || prev[0].EventID != evs[0].id.String() || prev[1].EventID != evs[1].id.String() {
			return nil, fmt.Errorf("aggregate %s already has events %+v, not the fault's", key, prev)
		}
		return prev, nil // an earlier try committed
	}
	var out []history.Appended
	err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, oversizeSQL, aggType, key,
			[]uuid.UUID{evs[0].id, evs[1].id}, []string{evs[0].typ, evs[1].typ}, []int{evs[0].schemaVersion, evs[1].schemaVersion},
			[]string{string(evs[0].payload), string(evs[1].payload)}, meta)
		if err != nil {
			return err
		}
		if out, err = scan(rows); err != nil {
			return err
		}
		if len(out) != 2 {
			return fmt.Errorf("the append returned %d rows, want 2", len(out))
		}
		shards := []int{int(out[0].Shard)}
		_, err = tx.Exec(ctx, `SELECT pg_notify($1, $2)`, outbox.NotifyChannel, outbox.NotifyPayload(shards...))
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
