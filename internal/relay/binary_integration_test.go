//go:build integration

package relay

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"cqrsflow/internal/testenv"
)

type relayProc struct {
	cmd     *exec.Cmd
	metrics string
	done    chan struct{} // closed when the process exited
	err     error         // its exit status, valid after done
}

// wait waits up to d for the process to exit and returns its status.
func (p *relayProc) wait(t *testing.T, d time.Duration) error {
	t.Helper()
	select {
	case <-p.done:
		return p.err
	case <-time.After(d):
		t.Fatalf("relay process did not exit within %s", d)
		return nil
	}
}

func startBinary(t *testing.T, bin string, e *itEnv, id string, batch, workers int) *relayProc {
	t.Helper()
	port := testenv.FreePort(t)
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(),
		"POSTGRES_URL="+e.pg.URL, "KAFKA_BROKERS="+strings.Join(e.brokers, ","), "TOPIC_PREFIX="+e.prefix,
		"METRICS_ADDR=127.0.0.1:"+strconv.Itoa(port), "RELAY_ID="+id, "BATCH_SIZE="+strconv.Itoa(batch), "PUBLISH_WORKERS="+strconv.Itoa(workers),
		"LEASE_TTL=2s", "POLL_INTERVAL=100ms", "LOG_LEVEL=warn")
	log, err := os.Create(filepath.Join(t.TempDir(), id+".log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &relayProc{cmd: cmd, metrics: fmt.Sprintf("http://127.0.0.1:%d", port), done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			b, _ := os.ReadFile(log.Name())
			t.Logf("%s log:\n%s", id, b)
		}
	})
	return p
}

func (p *relayProc) get(path string) (int, string) {
	resp, err := http.Get(p.metrics + path)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// kill -9 of the real binary mid-drain, then a second process is stopped
// with SIGTERM mid-drain, then a third finishes: nothing is missing; the
// kill leaves at most one batch of duplicates; the SIGTERM none (its
// in-flight batch is acked AND deleted before it exits). One publish
// worker, so "one batch" is the exact bound (with n workers it is one
// batch per worker: each can be between its ack and its delete).
func TestBinaryKill9ThenSigterm(t *testing.T) {
	const n, batch, workers = 24000, 500, 1
	e := newEnv(t, testenv.KafkaBrokers())
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	bin := filepath.Join(t.TempDir(), "outbox-relay")
	if out, err := exec.Command("go", "build", "-o", bin, "cqrsflow/outbox-relay").CombinedOutput(); err != nil {
		t.Fatalf("building outbox-relay: %v\n%s", err, out)
	}
	want := prefill(ctx, t, e.pg.Pool, n, 500)

	// 1: kill -9 while a batch is acked by Kafka but not yet deleted
	// (Kafka holds more records than rows left the outbox). The process is
	// frozen with SIGSTOP and only judged once what it already sent has
	// settled on both sides (a DELETE sent just before the freeze still
	// commits on the server); the state after the kill decides. If the
	// kill missed that window, the next "first" process (same relay id, so
	// it adopts the leases at once) is tried again.
	var p1 *relayProc
	midBatch := false
	for attempt := 1; attempt <= 3 && !midBatch; attempt++ {
		p1 = startBinary(t, bin, e, "first", batch, workers)
		target := outboxCount(ctx, t, e.pg.Pool) - int64(n/8)
		waitFor(t, "first relay drained an eighth", time.Minute, func() bool { return outboxCount(ctx, t, e.pg.Pool) <= target })
		gap := func() bool { onKafka, left := settled(ctx, t, e); return onKafka > int64(n)-left }
		for try := 0; try < 300 && !midBatch; try++ {
			if err := p1.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
				t.Fatal(err)
			}
			midBatch = gap()
			if !midBatch {
				if err := p1.cmd.Process.Signal(syscall.SIGCONT); err != nil {
					t.Fatal(err)
				}
				time.Sleep(time.Duration(try%7) * time.Millisecond)
			}
		}
		if err := p1.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = p1.wait(t, 10*time.Second)
		midBatch = midBatch && gap()
		t.Logf("kill -9 attempt %d: between an ack and its delete: %v", attempt, midBatch)
	}
	if !midBatch {
		t.Fatal("never caught the first relay between an ack and its delete in 3 processes")
	}
	afterKill := outboxCount(ctx, t, e.pg.Pool)
	if afterKill == 0 {
		t.Fatal("first relay drained everything before the kill; the test proves nothing")
	}

	// 2: another relay takes the expired leases; SIGTERM mid-drain.
	p2 := startBinary(t, bin, e, "second", batch, workers)
	waitFor(t, "second relay ready", 30*time.Second, func() bool { c, _ := p2.get("/readyz"); return c == 200 })
	waitFor(t, "second relay drained some", time.Minute, func() bool { return outboxCount(ctx, t, e.pg.Pool) <= afterKill/2 })
	if err := p2.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := p2.wait(t, 30*time.Second); err != nil {
		t.Fatalf("second relay exited with %v after SIGTERM, want 0", err)
	}
	afterTerm := outboxCount(ctx, t, e.pg.Pool)
	if afterTerm == 0 {
		t.Fatal("second relay drained everything before SIGTERM; the test proves nothing")
	}
	var held int64
	if err := e.pg.Pool.QueryRow(ctx, `SELECT count(*) FROM relay_leases WHERE owner = 'second'`).Scan(&held); err != nil {
		t.Fatal(err)
	}
	if held != 0 {
		t.Fatalf("second relay left %d leases after SIGTERM, want 0 (released)", held)
	}
	// Nothing still in the outbox is on Kafka: the batch in flight at
	// SIGTERM was deleted after its ack, and the kill's leftovers were
	// republished by the second relay first (lowest ids first).
	onKafka := consumeAll(t, e.brokers, e.topics, n-int(afterTerm), time.Minute)
	seen := map[string]bool{}
	for _, r := range onKafka {
		seen[r.env.EventID] = true
	}
	rows, err := e.pg.Pool.Query(ctx, `SELECT e.event_id::text FROM outbox o JOIN events e USING (global_position)`)
	if err != nil {
		t.Fatal(err)
	}
	overlap := 0
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		if seen[id] {
			overlap++
		}
	}
	if rows.Err() != nil {
		t.Fatal(rows.Err())
	}
	if overlap != 0 {
		t.Fatalf("%d rows still in the outbox are already on Kafka after a clean SIGTERM", overlap)
	}
	dupsBeforeThird := len(onKafka) - len(seen)

	// 3: a third relay finishes.
	p3 := startBinary(t, bin, e, "third", batch, workers)
	waitFor(t, "outbox drained", 2*time.Minute, func() bool { return outboxCount(ctx, t, e.pg.Pool) == 0 })
	recs := consumeAll(t, e.brokers, e.topics, n, 2*time.Minute)
	dups := checkStream(t, recs, want)
	t.Logf("killed between ack and delete: %v; left after kill %d, after SIGTERM %d; %d records on Kafka, %d duplicates (%d before the third relay)", midBatch, afterKill, afterTerm, len(recs), dups, dupsBeforeThird)
	if dups == 0 {
		t.Fatal("killed with acked rows undeleted, yet no duplicate on Kafka: the restart did not republish them?")
	}
	if dups > batch {
		t.Fatalf("%d duplicates, want at most one batch (%d)", dups, batch)
	}
	if dups != dupsBeforeThird {
		t.Fatalf("the third relay added %d duplicates; a clean SIGTERM must leave none", dups-dupsBeforeThird)
	}
	// Metrics and readiness of the real binary.
	waitFor(t, "pending gauge 0", 10*time.Second, func() bool {
		_, body := p3.get("/metrics")
		return strings.Contains(body, "\ncqrsflow_outbox_pending_events 0\n")
	})
	_, body := p3.get("/metrics")
	for _, m := range []string{"cqrsflow_relay_published_total{topic=", "cqrsflow_relay_publish_lag_seconds_bucket", "cqrsflow_outbox_oldest_pending_age_seconds 0", "cqrsflow_relay_owned_shards 64"} {
		if !strings.Contains(body, m) {
			t.Errorf("/metrics lacks %q", m)
		}
	}
	if c, _ := p3.get("/healthz"); c != 200 {
		t.Errorf("/healthz = %d", c)
	}
}

// settled returns the records on Kafka and the rows left in the outbox
// once both stopped changing (three equal readings 50 ms apart, at most
// 5 s): requests a frozen or killed relay already sent are done.
func settled(ctx context.Context, t *testing.T, e *itEnv) (onKafka, left int64) {
	t.Helper()
	read := func() (int64, int64) {
		ends, err := e.adm.ListEndOffsets(ctx, e.topics...)
		if err != nil {
			t.Fatal(err)
		}
		var sum int64
		ends.Each(func(o kadm.ListedOffset) { sum += o.Offset })
		return sum, outboxCount(ctx, t, e.pg.Pool)
	}
	onKafka, left = read()
	for same, deadline := 0, time.Now().Add(5*time.Second); same < 2 && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
		k, l := read()
		if k == onKafka && l == left {
			same++
		} else {
			onKafka, left, same = k, l, 0
		}
	}
	return onKafka, left
}
