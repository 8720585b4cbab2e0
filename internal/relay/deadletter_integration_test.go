//go:build integration

package relay

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"cqrsflow/internal/envelope"
	"cqrsflow/internal/outbox"
	"cqrsflow/internal/testenv"
)

// appendPayload appends one event with the given JSON payload the way the
// API does and returns its version.
func appendPayload(ctx context.Context, t *testing.T, pool *pgxpool.Pool, a aggregate, payload string) int64 {
	t.Helper()
	var v int64
	if err := pool.QueryRow(ctx, appendSQL, a.typ, a.id, "E", payload).Scan(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

// bigPayload is a JSON object of about n bytes that compression does not
// shrink (Kafka's max.message.bytes applies to the compressed batch).
func bigPayload(n int) string {
	b := make([]byte, n*3/4)
	_, _ = rand.Read(b)
	return `{"blob":"` + base64.StdEncoding.EncodeToString(b) + `"}`
}

// neighbours returns n aggregates of type typ in shard (the same relay
// worker, the same claims) whose keys go to partition of a topic with
// parts partitions (the same produce batches).
func neighbours(ctx context.Context, t *testing.T, pool *pgxpool.Pool, typ string, shard int16, partition, parts int32, n int) []aggregate {
	t.Helper()
	var out []aggregate
	for len(out) < n {
		cands := make([]string, 5000)
		for i := range cands {
			cands[i] = uuid.NewString()
		}
		rows, err := pool.Query(ctx, `SELECT id FROM unnest($1::text[]) AS id WHERE `+outbox.ShardSQL("id")+` = $2`, cands, shard)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				t.Fatal(err)
			}
			if partition < 0 || javaPartition([]byte(id), parts) == partition {
				out = append(out, aggregate{typ, id})
			}
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
	}
	return out[:n]
}

// setTopicConfig sets one config of topic and waits until the broker
// reports it.
func setTopicConfig(ctx context.Context, t *testing.T, adm *kadm.Client, topic, name, value string) {
	t.Helper()
	res, err := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Op: kadm.SetConfig, Name: name, Value: &value}}, topic)
	if err == nil {
		for _, r := range res {
			if r.Err != nil {
				err = r.Err
			}
		}
	}
	if err != nil {
		t.Fatalf("setting %s=%s on %s: %v", name, value, topic, err)
	}
	waitFor(t, name+" applied", 10*time.Second, func() bool {
		rcs, err := adm.DescribeTopicConfigs(ctx, topic)
		if err != nil {
			return false
		}
		rc, err := rcs.On(topic, nil)
		if err != nil {
			return false
		}
		for _, c := range rc.Configs {
			if c.Key == name && c.Value != nil && *c.Value == value {
				return true
			}
		}
		return false
	})
}

// relayBinary builds outbox-relay once per test.
func relayBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "outbox-relay")
	if out, err := exec.Command("go", "build", "-o", bin, "cqrsflow/outbox-relay").CombinedOutput(); err != nil {
		t.Fatalf("building outbox-relay: %v\n%s", err, out)
	}
	return bin
}

// runBinary runs `outbox-relay args...` against e's schema and returns
// its exit status and output.
func runBinary(t *testing.T, bin string, e *itEnv, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "POSTGRES_URL="+e.pg.URL, "LOG_LEVEL=info")
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), string(out)
	}
	if err != nil {
		t.Fatal(err)
	}
	return 0, string(out)
}

func outboxOf(ctx context.Context, t *testing.T, pool *pgxpool.Pool, aggID string) []int64 {
	t.Helper()
	var ids []int64
	if err := pool.QueryRow(ctx, `SELECT COALESCE(array_agg(id ORDER BY id), '{}') FROM outbox WHERE aggregate_id = $1`, aggID).Scan(&ids); err != nil {
		t.Fatal(err)
	}
	return ids
}

// The case on the real stack: an outbox row whose record is
// larger than the topic's max.message.bytes. Its neighbours (same shard,
// and the same Kafka partition, so Kafka refuses them in the same produce
// batches) and every other aggregate are published; the row is
// dead-lettered after its attempts; its aggregate's later rows (written
// before and after) are held, also once the low-water mark has passed
// them; after the operator raises the limit, `outbox-relay dead retry`
// publishes the row and then the held rows, in order, at once (the
// rescan is an hour away). Nothing is lost.
func TestTooLargeRowIsDeadLetteredThenRetried(t *testing.T) {
	e := newEnv(t, testenv.KafkaBrokers())
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	bin := relayBinary(t)
	topic := envelope.Topic(e.prefix, "product")
	setTopicConfig(ctx, t, e.adm, topic, "max.message.bytes", "8192")

	poison := aggregate{"product", uuid.NewString()}
	shard := shardOf(ctx, t, e.pg.Pool, poison.id)
	near := neighbours(ctx, t, e.pg.Pool, "product", shard, javaPartition([]byte(poison.id), 12), 12, 3)
	sameShard := neighbours(ctx, t, e.pg.Pool, "order", shard, -1, 0, 2)
	others := newAggregates(20)
	want := map[string]int64{}
	write := func(a aggregate, payload string) {
		want[a.id] = appendPayload(ctx, t, e.pg.Pool, a, payload)
	}
	// All in the outbox before the relay starts: the poison row and its
	// aggregate's later rows meet their neighbours in one claim.
	write(poison, bigPayload(20000))
	for v := range 3 {
		for _, a := range slices.Concat(near, sameShard, others) {
			write(a, `{"n":`+strconv.Itoa(v)+`}`)
		}
		if v < 2 {
			write(poison, `{"small":true}`)
		}
	}
	poisonIDs := outboxOf(ctx, t, e.pg.Pool, poison.id)

	start := time.Now()
	rr := startRelay(t, e, "poison", func(c *Config) { c.RescanInterval = time.Hour }, 0)
	firstRefusal := waitTime(t, "the first refusal", 30*time.Second, func() bool {
		return testutil.ToFloat64(rr.m.errors.WithLabelValues(topic)) > 0
	})
	othersOut := waitTime(t, "every other row published", 30*time.Second, func() bool {
		return countRows(ctx, t, e.pg.Pool, `SELECT count(*) FROM outbox WHERE aggregate_id <> $1`, poison.id) == 0
	})
	dead := waitTime(t, "the poison row dead-lettered", 30*time.Second, func() bool {
		return countRows(ctx, t, e.pg.Pool, `SELECT count(*) FROM outbox_dead_letters`) == 1
	})
	t.Logf("first refusal %s after start; every other row out of the outbox %s after it; dead-lettered %s after it",
		firstRefusal.Sub(start).Round(time.Millisecond), othersOut.Sub(firstRefusal).Round(time.Millisecond), dead.Sub(firstRefusal).Round(time.Millisecond))

	var reason, dlAgg string
	var attempts int
	var dlID, version int64
	if err := e.pg.Pool.QueryRow(ctx, `SELECT id, reason, attempts, aggregate_id, version FROM outbox_dead_letters`).Scan(&dlID, &reason, &attempts, &dlAgg, &version); err != nil {
		t.Fatal(err)
	}
	if dlID != poisonIDs[0] || reason != "MESSAGE_TOO_LARGE" || attempts != 3 || dlAgg != poison.id || version != 1 {
		t.Fatalf("dead letter: id %d reason %s attempts %d aggregate %s version %d; want id %d MESSAGE_TOO_LARGE 3 %s 1",
			dlID, reason, attempts, dlAgg, version, poisonIDs[0], poison.id)
	}
	if held := outboxOf(ctx, t, e.pg.Pool, poison.id); !slices.Equal(held, poisonIDs[1:]) {
		t.Fatalf("held rows %v, want %v", held, poisonIDs[1:])
	}

	// Writes go on: the poison's aggregate is held, the others flow.
	write(poison, `{"small":true}`)
	for _, a := range near {
		write(a, `{"n":9}`)
	}
	waitFor(t, "the new rows of the others published", 30*time.Second, func() bool { return outboxCount(ctx, t, e.pg.Pool) == 3 })
	// Held rows are not pending for the relay: they wait for an operator.
	waitFor(t, "gauges: 1 dead letter, 3 held rows, 0 pending", 10*time.Second, func() bool {
		return testutil.ToFloat64(rr.m.deadLetters) == 1 && testutil.ToFloat64(rr.m.heldRows) == 3 && testutil.ToFloat64(rr.m.pending) == 0
	})
	if n := testutil.ToFloat64(rr.m.deadLettered.WithLabelValues("MESSAGE_TOO_LARGE")); n != 1 {
		t.Fatalf("cqrsflow_relay_dead_lettered_total{reason=MESSAGE_TOO_LARGE} = %v", n)
	}
	held := outboxOf(ctx, t, e.pg.Pool, poison.id)
	// The low-water mark passes the held rows: only the redrive generation
	// can bring them back before the rescan.
	waitFor(t, "the low-water mark past the held rows", 30*time.Second, func() bool {
		return markOf(rr, shard) >= float64(held[len(held)-1])
	})
	expectPublished := func(n int) []consumed {
		t.Helper()
		return consumeAll(t, e.brokers, e.topics, n, time.Minute)
	}
	othersWant := map[string]int64{}
	for id, v := range want {
		if id != poison.id {
			othersWant[id] = v
		}
	}
	checkStream(t, expectPublished(total(othersWant)), othersWant) // and no record of the poison's aggregate

	// The operator raises the limit and retries with one command.
	setTopicConfig(ctx, t, e.adm, topic, "max.message.bytes", "1048588")
	retried := time.Now()
	code, out := runBinary(t, bin, e, "dead", "retry", "--aggregate", poison.id)
	if code != 0 || !strings.Contains(out, "moved 1 dead letter(s)") || !strings.Contains(out, "3 held row(s) follow") {
		t.Fatalf("dead retry: exit %d\n%s", code, out)
	}
	drained := waitTime(t, "the retried row and its held rows published", 15*time.Second, func() bool { return outboxCount(ctx, t, e.pg.Pool) == 0 })
	t.Logf("events held behind the dead letter: %d; retry → drained %s", len(held), drained.Sub(retried).Round(time.Millisecond))
	recs := expectPublished(total(want))
	if dups := checkStream(t, recs, want); dups != 0 {
		t.Fatalf("%d duplicates", dups)
	}
	waitFor(t, "gauges back to 0", 10*time.Second, func() bool {
		return testutil.ToFloat64(rr.m.deadLetters) == 0 && testutil.ToFloat64(rr.m.heldRows) == 0
	})
}

// waitTime waits like waitFor and returns when the condition held.
func waitTime(t *testing.T, what string, timeout time.Duration, cond func() bool) time.Time {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Now()
}

func countRows(ctx context.Context, t *testing.T, pool *pgxpool.Pool, q string, args ...any) int64 {
	t.Helper()
	var n int64
	if err := pool.QueryRow(ctx, q, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// waitDeadLettered waits until aggregate agg's first outbox row (ids[0])
// is dead-lettered for reason after attempts and every other aggregate's
// rows are published, and checks that the aggregate's later rows (ids[1:])
// are held in the outbox.
func waitDeadLettered(ctx context.Context, t *testing.T, pool *pgxpool.Pool, agg string, ids []int64, reason string, attempts int) {
	t.Helper()
	waitFor(t, "the row dead-lettered", 30*time.Second, func() bool {
		return countRows(ctx, t, pool, `SELECT count(*) FROM outbox_dead_letters WHERE id = $1 AND reason = $2 AND attempts = $3`, ids[0], reason, attempts) == 1
	})
	waitFor(t, "the neighbours published", 30*time.Second, func() bool {
		return countRows(ctx, t, pool, `SELECT count(*) FROM outbox WHERE aggregate_id <> $1`, agg) == 0
	})
	if held := outboxOf(ctx, t, pool, agg); !slices.Equal(held, ids[1:]) {
		t.Fatalf("held %v, want %v", held, ids[1:])
	}
}

// versionsOf returns the versions of aggregate id's records in offset
// order, and the records of every other aggregate.
func versionsOf(recs []consumed, id string) (versions []int64, rest []consumed) {
	slices.SortStableFunc(recs, func(a, b consumed) int { return int(a.offset - b.offset) })
	for _, r := range recs {
		if r.key == id {
			versions = append(versions, r.env.Version)
		} else {
			rest = append(rest, r)
		}
	}
	return versions, rest
}

// A stored payload that is not JSON: the row's envelope cannot be built.
// It is never sent, nor are its aggregate's later rows; it is
// dead-lettered (reason envelope) while its shard's other aggregates
// flow; `dead discard` without --yes changes nothing, with --yes it drops
// the event from publication (it stays in events, recorded in
// outbox_discarded) and the held rows are published, in order.
func TestUnbuildableEnvelopeIsDeadLetteredThenDiscarded(t *testing.T) {
	e := newEnv(t, testenv.KafkaBrokers())
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	bin := relayBinary(t)
	bad := aggregate{"order", uuid.NewString()}
	near := neighbours(ctx, t, e.pg.Pool, "order", shardOf(ctx, t, e.pg.Pool, bad.id), -1, 0, 3)
	want := map[string]int64{}
	for v := range 3 {
		for _, a := range append([]aggregate{bad}, near...) {
			want[a.id] = appendPayload(ctx, t, e.pg.Pool, a, `{"n":`+strconv.Itoa(v)+`}`)
		}
	}
	ids := outboxOf(ctx, t, e.pg.Pool, bad.id)
	if _, err := e.pg.Pool.Exec(ctx, `UPDATE outbox SET payload = '{"price": 1.5,' WHERE id = $1`, ids[0]); err != nil {
		t.Fatal(err)
	}
	rr := startRelay(t, e, "envelope", func(c *Config) { c.PoisonAttempts, c.PoisonInterval = 2, 200*time.Millisecond }, 0)
	waitDeadLettered(ctx, t, e.pg.Pool, bad.id, ids, reasonEnvelope, 2)
	if n := testutil.ToFloat64(rr.m.deadLettered.WithLabelValues(reasonEnvelope)); n != 1 {
		t.Fatalf("dead_lettered_total{reason=envelope} = %v", n)
	}

	id := strconv.FormatInt(ids[0], 10)
	if code, out := runBinary(t, bin, e, "dead", "discard", "--id", id); code != 2 || !strings.Contains(out, "--yes") {
		t.Fatalf("discard without --yes: exit %d\n%s", code, out)
	}
	if countRows(ctx, t, e.pg.Pool, `SELECT count(*) FROM outbox_dead_letters`) != 1 {
		t.Fatal("discard without --yes removed the dead letter")
	}
	if code, out := runBinary(t, bin, e, "dead", "discard", "--id", id, "--yes"); code != 0 || !strings.Contains(out, "2 held row(s)") {
		t.Fatalf("discard --yes: exit %d\n%s", code, out)
	}
	waitFor(t, "the held rows published", 15*time.Second, func() bool { return outboxCount(ctx, t, e.pg.Pool) == 0 })
	if n := countRows(ctx, t, e.pg.Pool, `SELECT count(*) FROM outbox_discarded d JOIN events ev USING (event_id)
		WHERE d.id = $1 AND ev.version = 1 AND ev.aggregate_id = $2`, ids[0], bad.id); n != 1 {
		t.Fatal("the discarded event is not recorded in outbox_discarded beside its events row")
	}
	recs := consumeAll(t, e.brokers, e.topics, total(want)-1, time.Minute)
	versions, rest := versionsOf(recs, bad.id)
	if !slices.Equal(versions, []int64{2, 3}) {
		t.Fatalf("versions of the discarded event's aggregate on Kafka: %v, want [2 3]", versions)
	}
	delete(want, bad.id)
	checkStream(t, rest, want)
}

// flakyProducer fails the records of one key with a retriable Kafka
// error until it is healed, and passes every other record on.
type flakyProducer struct {
	Producer
	key    string
	healed *atomic.Bool // shared by the relay's producers
}

func (f *flakyProducer) Produce(ctx context.Context, r *kgo.Record, promise func(*kgo.Record, error)) {
	if string(r.Key) == f.key && !f.healed.Load() {
		promise(r, kerr.NotEnoughReplicas)
		return
	}
	f.Producer.Produce(ctx, r, promise)
}

// A retryable failure of one aggregate's records holds that aggregate's
// rows only: the other aggregates of its shard (its worker's batches) are
// published meanwhile, and nothing is counted against the failing row
// (with POISON_ATTEMPTS=1 a single count would dead-letter it).
func TestRetryableFailureHoldsOnlyItsAggregate(t *testing.T) {
	e := newEnv(t, testenv.KafkaBrokers())
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sick := aggregate{"product", uuid.NewString()}
	near := neighbours(ctx, t, e.pg.Pool, "product", shardOf(ctx, t, e.pg.Pool, sick.id), -1, 0, 4)
	var healed atomic.Bool
	startRelayWith(t, e, "flaky", func(c *Config) {
		c.PoisonAttempts, c.PoisonInterval, c.MaxBackoff = 1, 10*time.Millisecond, time.Second
	}, ProducerOpts(e.brokers, 0), func(p Producer) Producer { return &flakyProducer{Producer: p, key: sick.id, healed: &healed} })
	want := map[string]int64{}
	var slowest time.Duration
	for round := range 5 {
		want[sick.id] = appendPayload(ctx, t, e.pg.Pool, sick, `{"n":1}`)
		for _, a := range near {
			want[a.id] = appendPayload(ctx, t, e.pg.Pool, a, `{"n":`+strconv.Itoa(round)+`}`)
		}
		written := time.Now()
		out := waitTime(t, "the other aggregates published while one fails", 10*time.Second, func() bool {
			return countRows(ctx, t, e.pg.Pool, `SELECT count(*) FROM outbox WHERE aggregate_id <> $1`, sick.id) == 0
		})
		slowest = max(slowest, out.Sub(written))
	}
	if n := len(outboxOf(ctx, t, e.pg.Pool, sick.id)); n != 5 {
		t.Fatalf("the failing aggregate has %d rows in the outbox, want all 5", n)
	}
	if n := countRows(ctx, t, e.pg.Pool, `SELECT count(*) FROM outbox_dead_letters`); n != 0 {
		t.Fatalf("%d dead letters for a retryable failure", n)
	}
	healed.Store(true)
	waitFor(t, "the healed aggregate published", 15*time.Second, func() bool { return outboxCount(ctx, t, e.pg.Pool) == 0 })
	checkStream(t, consumeAll(t, e.brokers, e.topics, total(want), time.Minute), want)
	t.Logf("other aggregates of the failing one's shard published within %s of their write (worker backing off up to 1s)", slowest.Round(time.Millisecond))
}

// Kafka cut off (every connection refused) while rows are written:
// nothing is dead-lettered (POISON_ATTEMPTS=1 would do it at the first
// count) and everything is published, in order, once Kafka is back.
func TestKafkaCutDeadLettersNothing(t *testing.T) {
	e := newEnv(t, testenv.KafkaBrokers())
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	proxy := testenv.NewProxy(t, e.brokers[0])
	// Every broker address (bootstrap and advertised) goes through the proxy.
	dial := kgo.Dialer(func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, proxy.Addr())
	})
	startRelayKafka(t, e, "cut", func(c *Config) {
		c.PoisonAttempts, c.PoisonInterval, c.MaxBackoff = 1, 10*time.Millisecond, time.Second
	}, append(ProducerOpts([]string{proxy.Addr()}, 2*time.Second), dial))
	aggs := newAggregates(30)
	want := writeConcurrently(ctx, t, e.pg.Pool, aggs, 300, 2, 0)
	waitFor(t, "published before the cut", 30*time.Second, func() bool { return outboxCount(ctx, t, e.pg.Pool) == 0 })
	proxy.Cut()
	during := writeConcurrently(ctx, t, e.pg.Pool, aggs, 300, 2, 10*time.Millisecond)
	time.Sleep(4 * time.Second) // several delivery timeouts
	if n := outboxCount(ctx, t, e.pg.Pool); n != 300 {
		t.Fatalf("%d rows left the outbox while Kafka was cut off, want all 300 there", 300-n)
	}
	proxy.Restore()
	for id, v := range during {
		want[id] = max(want[id], v)
	}
	waitFor(t, "drained after the cut", time.Minute, func() bool { return outboxCount(ctx, t, e.pg.Pool) == 0 })
	if n := countRows(ctx, t, e.pg.Pool, `SELECT count(*) FROM outbox_dead_letters`); n != 0 {
		t.Fatalf("%d rows dead-lettered by an outage", n)
	}
	checkStream(t, consumeAll(t, e.brokers, e.topics, total(want), time.Minute), want)
}

// Dead-lettering is fenced like the delete: a relay whose lease was taken
// over moves nothing, and a takeover racing the move never loses or
// duplicates the row: it is in the outbox or in outbox_dead_letters,
// exactly once, after every round.
func TestDeadLetteringIsFencedByTheLease(t *testing.T) {
	pg := testenv.Postgres(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	a := newAggregates(1)[0]
	for range 2 {
		if _, err := appendEvent(ctx, pg.Pool, a.typ, a.id); err != nil {
			t.Fatal(err)
		}
	}
	shard := shardOf(ctx, t, pg.Pool, a.id)
	claimer := &store{pool: pg.Pool, id: "claimer", ttl: time.Minute}
	leases, err := claimer.acquire(ctx, outbox.ShardCount)
	if err != nil {
		t.Fatal(err)
	}
	c, err := claimer.claim(ctx, map[int16]int64{shard: leases[shard]}, 0, 10, nil, false)
	rows := c.rows
	if err != nil || len(rows) != 2 {
		t.Fatalf("claim: %v, %d rows", err, len(rows))
	}
	dead := []deadLetter{{row: &rows[0], reason: "MESSAGE_TOO_LARGE", err: "too large", attempts: 3, first: time.Now(), last: time.Now()}}
	exactlyOnce := func(round int) (inDead bool) {
		t.Helper()
		o := countRows(ctx, t, pg.Pool, `SELECT count(*) FROM outbox WHERE id = $1`, rows[0].ID)
		d := countRows(ctx, t, pg.Pool, `SELECT count(*) FROM outbox_dead_letters WHERE id = $1`, rows[0].ID)
		if o+d != 1 {
			t.Fatalf("round %d: the row is %d times in the outbox and %d times in outbox_dead_letters", round, o, d)
		}
		return d == 1
	}
	takeOver := func(owner string) map[int16]int64 {
		t.Helper()
		// The UPDATE waits for a finish holding the lease row FOR SHARE;
		// acquire skips a locked row, so it may need another go.
		if _, err := pg.Pool.Exec(ctx, `UPDATE relay_leases SET expires_at = '-infinity' WHERE shard = $1`, shard); err != nil {
			t.Fatal(err)
		}
		var got map[int16]int64
		waitFor(t, owner+" acquiring the shard", 10*time.Second, func() bool {
			var err error
			if got, err = (&store{pool: pg.Pool, id: owner, ttl: time.Minute}).acquire(ctx, outbox.ShardCount); err != nil {
				t.Fatal(err)
			}
			return got[shard] != 0
		})
		return map[int16]int64{shard: got[shard]}
	}

	oldLease := takeOver("old")
	takeOver("new")
	out, err := (&store{pool: pg.Pool, id: "old"}).finish(ctx, nil, dead, oldLease)
	if err != nil || out.moved != 0 || !slices.Equal(out.lost, []int16{shard}) {
		t.Fatalf("fenced-out relay: moved %d, lost %v, %v; want nothing moved and the shard lost", out.moved, out.lost, err)
	}
	if exactlyOnce(0) {
		t.Fatal("a relay without the lease dead-lettered the row")
	}

	moved := 0
	for round := 1; round <= 40; round++ {
		owner := "r" + strconv.Itoa(round)
		lease := takeOver(owner)
		done := make(chan error, 1)
		go func() {
			_, err := (&store{pool: pg.Pool, id: owner}).finish(ctx, nil, dead, lease)
			done <- err
		}()
		takeOver("thief" + strconv.Itoa(round)) // races the move
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if exactlyOnce(round) {
			moved++
			// Put it back for the next round, as a retry would.
			if _, err := RetryDeadLetters(ctx, pg.Pool, Selection{All: true}); err != nil {
				t.Fatal(err)
			}
		}
	}
	t.Logf("takeover races: the move won %d of 40 rounds, the takeover the rest; the row was never lost or doubled", moved)
	if left := countRows(ctx, t, pg.Pool, `SELECT count(*) FROM outbox WHERE aggregate_id = $1`, a.id); left != 2 {
		t.Fatalf("%d rows of the aggregate in the outbox, want both", left)
	}
}

// A row whose record is over the producer's batch limit (1 MB): franz-go
// would refuse it on its own and still send the records behind it, so the
// relay never hands it over. Its aggregate's later rows are held (nothing
// of the aggregate reaches Kafka ahead of it) while its partition
// neighbours, written before and after it, flow in order; it is
// dead-lettered as MESSAGE_TOO_LARGE after its probes, and once discarded
// the held rows follow.
func TestOversizedRowNeverOvertaken(t *testing.T) {
	e := newEnv(t, testenv.KafkaBrokers())
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	bin := relayBinary(t)
	huge := aggregate{"product", uuid.NewString()}
	shard := shardOf(ctx, t, e.pg.Pool, huge.id)
	near := neighbours(ctx, t, e.pg.Pool, "product", shard, javaPartition([]byte(huge.id), 12), 12, 3)
	want := map[string]int64{}
	want[huge.id] = appendPayload(ctx, t, e.pg.Pool, huge, bigPayload(producerBatchMaxBytes+50_000))
	for v := range 3 {
		for _, a := range near {
			want[a.id] = appendPayload(ctx, t, e.pg.Pool, a, `{"n":`+strconv.Itoa(v)+`}`)
		}
		if v < 2 {
			want[huge.id] = appendPayload(ctx, t, e.pg.Pool, huge, `{"small":true}`)
		}
	}
	ids := outboxOf(ctx, t, e.pg.Pool, huge.id)
	startRelay(t, e, "oversized", func(c *Config) { c.PoisonInterval = 200 * time.Millisecond }, 0)
	waitDeadLettered(ctx, t, e.pg.Pool, huge.id, ids, kerr.MessageTooLarge.Message, 3)
	others := map[string]int64{}
	for _, a := range near {
		others[a.id] = want[a.id]
	}
	recs := consumeAll(t, e.brokers, e.topics, total(others), time.Minute)
	if versions, _ := versionsOf(recs, huge.id); len(versions) != 0 {
		t.Fatalf("versions %v of the oversized row's aggregate on Kafka while it is dead-lettered", versions)
	}
	checkStream(t, recs, others)

	if code, out := runBinary(t, bin, e, "dead", "discard", "--id", strconv.FormatInt(ids[0], 10), "--yes"); code != 0 || !strings.Contains(out, "2 held row(s)") {
		t.Fatalf("discard --yes: exit %d\n%s", code, out)
	}
	waitFor(t, "the held rows published", 15*time.Second, func() bool { return outboxCount(ctx, t, e.pg.Pool) == 0 })
	recs = consumeAll(t, e.brokers, e.topics, total(want)-1, time.Minute)
	versions, rest := versionsOf(recs, huge.id)
	if !slices.Equal(versions, []int64{2, 3}) {
		t.Fatalf("versions of the oversized row's aggregate on Kafka after the discard: %v, want [2 3]", versions)
	}
	checkStream(t, rest, others)
}
