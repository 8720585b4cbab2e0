//go:build integration

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"cqrsflow/internal/cli"
	"cqrsflow/internal/outbox"
	"cqrsflow/internal/relay"
	"cqrsflow/internal/testenv"
)

func runDead(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := program.Run(context.Background(), append([]string{"dead"}, args...), &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// deadLetterRow moves the outbox row of (aggregate, version) to
// outbox_dead_letters the way the relay does, and returns its id.
func deadLetterRow(ctx context.Context, t *testing.T, pg *testenv.PG, agg string, version int) int64 {
	t.Helper()
	var id int64
	err := pg.Pool.QueryRow(ctx, `WITH gone AS (DELETE FROM outbox WHERE aggregate_id = $1 AND version = $2 RETURNING *)
		INSERT INTO outbox_dead_letters (id, shard, aggregate_type, aggregate_id, global_position, event_id, event_type,
			schema_version, version, payload, metadata, occurred_at, recorded_at, created_at,
			reason, error, attempts, first_failed_at, last_failed_at, relay_id)
		SELECT id, shard, aggregate_type, aggregate_id, global_position, event_id, event_type,
			schema_version, version, payload, metadata, occurred_at, recorded_at, created_at,
			'MESSAGE_TOO_LARGE', 'MESSAGE_TOO_LARGE: The request included a message larger than the max message size', 3,
			clock_timestamp(), clock_timestamp(), 'r1'
		FROM gone RETURNING id`, agg, version).Scan(&id)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func count(ctx context.Context, t *testing.T, pg *testenv.PG, q string, args ...any) int64 {
	t.Helper()
	var n int64
	if err := pg.Pool.QueryRow(ctx, q, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// The dead commands against a real database: listing, the usage errors
// that need the database to be found (unknown id, unknown aggregate, a
// discard without --yes), all-or-nothing retries, a retry that puts the
// row back under its id and wakes the relays, and a discard that keeps
// the event and an audit row.
func TestDeadCommandsOnTheDatabase(t *testing.T) {
	pg := testenv.Postgres(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	t.Setenv("POSTGRES_URL", pg.URL)
	_, err := pg.Pool.Exec(ctx, `INSERT INTO events (event_id, aggregate_type, aggregate_id, version, event_type, schema_version, payload, occurred_at)
		VALUES (gen_random_uuid(), 'product', 'p-1', 1, 'ProductCreated', 1, '{"name":"a"}', now()),
		       (gen_random_uuid(), 'product', 'p-1', 2, 'ProductUpdated', 1, '{"name":"b"}', now()),
		       (gen_random_uuid(), 'product', 'p-1', 3, 'ProductUpdated', 1, '{"name":"c"}', now()),
		       (gen_random_uuid(), 'order', 'o-1', 1, 'OrderCreated', 1, '{"quantity":1}', now())`)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pg.Pool.Exec(ctx, outbox.CopyFromEventsSQL); err != nil {
		t.Fatal(err)
	}
	p1 := deadLetterRow(ctx, t, pg, "p-1", 1)
	o1 := deadLetterRow(ctx, t, pg, "o-1", 1)
	generation := func() int64 { return count(ctx, t, pg, `SELECT generation FROM outbox_redrives`) }
	gen0 := generation()

	code, out, errOut := runDead(t, "list")
	if code != cli.ExitOK || !strings.Contains(out, "product/p-1") || !strings.Contains(out, "order/o-1") ||
		!strings.Contains(out, "MESSAGE_TOO_LARGE") || !strings.Contains(out, "2 dead letter(s), 2 row(s) held") {
		t.Fatalf("dead list: exit %d\n%s%s", code, out, errOut)
	}
	code, out, _ = runDead(t, "list", "--json", "--aggregate", "p-1", "--aggregate-type", "product")
	var dls []relay.DeadLetter
	if err := json.Unmarshal([]byte(out), &dls); code != cli.ExitOK || err != nil || len(dls) != 1 ||
		dls[0].ID != p1 || dls[0].Held != 2 || dls[0].Version != 1 || dls[0].Attempts != 3 {
		t.Fatalf("dead list --json: exit %d, %v, %+v\n%s", code, err, dls, out)
	}
	if code, out, _ = runDead(t, "list", "--json", "--aggregate", "nobody"); code != cli.ExitOK || strings.TrimSpace(out) != "[]" {
		t.Fatalf("an empty list is an empty JSON array: exit %d %q", code, out)
	}

	unchanged := func(what string) {
		t.Helper()
		if n := count(ctx, t, pg, `SELECT count(*) FROM outbox_dead_letters`); n != 2 || generation() != gen0 {
			t.Fatalf("%s changed something: %d dead letters, generation %d → %d", what, n, gen0, generation())
		}
	}
	for _, args := range [][]string{
		{"retry", "--id", "999999"},
		{"retry", "--id", strconv.FormatInt(p1, 10), "--id", "999999"},
		{"retry", "--aggregate", "nobody"},
		{"retry", "--aggregate", "p-1", "--aggregate-type", "order"},
		{"discard", "--id", "999999", "--yes"},
		{"discard", "--id", "999999"},
	} {
		code, out, errOut := runDead(t, args...)
		if code != cli.ExitUsage || !strings.Contains(errOut, "no such dead letter") {
			t.Errorf("dead %q: exit %d, %q %q; want 2 and no such dead letter", args, code, out, errOut)
		}
		unchanged(strings.Join(args, " "))
	}
	code, out, errOut = runDead(t, "discard", "--id", strconv.FormatInt(o1, 10))
	if code != cli.ExitUsage || !strings.Contains(out, "order/o-1") || !strings.Contains(errOut, "--yes") {
		t.Fatalf("discard without --yes: exit %d\n%s%s", code, out, errOut)
	}
	unchanged("discard without --yes")

	// A retry puts the row back under its id (below the held rows) and
	// notifies its shard.
	listen, err := pgx.Connect(ctx, pg.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer listen.Close(context.Background())
	if _, err := listen.Exec(ctx, "LISTEN "+outbox.NotifyChannel); err != nil {
		t.Fatal(err)
	}
	code, out, errOut = runDead(t, "retry", "--aggregate", "p-1")
	if code != cli.ExitOK || !strings.Contains(out, "moved 1 dead letter(s)") || !strings.Contains(out, "2 held row(s) follow") {
		t.Fatalf("dead retry: exit %d\n%s%s", code, out, errOut)
	}
	var ids []int64
	if err := pg.Pool.QueryRow(ctx, `SELECT array_agg(id ORDER BY id) FROM outbox WHERE aggregate_id = 'p-1'`).Scan(&ids); err != nil {
		t.Fatal(err)
	}
	if len(ids) != 3 || ids[0] != p1 {
		t.Fatalf("p-1's outbox ids after the retry: %v, want the retried %d first of 3", ids, p1)
	}
	if same := count(ctx, t, pg, `SELECT count(*) FROM outbox o JOIN events e USING (global_position)
		WHERE o.id = $1 AND o.event_id = e.event_id AND o.payload::jsonb = e.payload AND o.version = e.version`, p1); same != 1 {
		t.Fatal("the retried row is not its event's copy")
	}
	if generation() <= gen0 {
		t.Fatal("the retry did not bump the redrive generation")
	}
	shard := count(ctx, t, pg, `SELECT shard FROM outbox WHERE id = $1`, p1)
	nctx, ncancel := context.WithTimeout(ctx, 5*time.Second)
	defer ncancel()
	for {
		n, err := listen.WaitForNotification(nctx)
		if err != nil {
			t.Fatalf("no notification for shard %d: %v", shard, err)
		}
		if shards, ok := outbox.ParseNotifyPayload(n.Payload); ok && slices.Contains(shards, int(shard)) {
			break
		}
	}

	// A discard keeps the event and records it.
	gen1 := generation()
	code, out, errOut = runDead(t, "discard", "--id", strconv.FormatInt(o1, 10), "--yes")
	if code != cli.ExitOK || !strings.Contains(out, "discarded dead letter") || !strings.Contains(errOut, "dead letter discarded") {
		t.Fatalf("dead discard --yes: exit %d\n%s%s", code, out, errOut)
	}
	if n := count(ctx, t, pg, `SELECT count(*) FROM outbox_discarded d JOIN events e USING (event_id) WHERE d.id = $1`, o1); n != 1 {
		t.Fatal("the discarded event is not in outbox_discarded beside its event")
	}
	if n := count(ctx, t, pg, `SELECT count(*) FROM outbox_dead_letters`); n != 0 || generation() <= gen1 {
		t.Fatalf("after discard: %d dead letters, generation %d → %d", n, gen1, generation())
	}
	if code, out, _ = runDead(t, "retry", "--all"); code != cli.ExitOK || !strings.Contains(out, "no dead letters to retry") {
		t.Fatalf("retry --all with none: exit %d %q", code, out)
	}
}
