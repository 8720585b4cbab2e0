//go:build integration

// End-to-end tests of the projector binary on the real stack: several
// processes sharing partitions (one SIGKILLed), SIGTERM, replay with the
// CLI and with Kafka's own tool, rebuild under a reading client.
package main_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/elastic/go-elasticsearch/v8"
	"github.com/gin-gonic/gin"
	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"cqrsflow/internal/envelope"
	"cqrsflow/internal/esindex"
	"cqrsflow/internal/projection/products"
	"cqrsflow/internal/projector"
	"cqrsflow/internal/query"
	"cqrsflow/internal/testenv"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

func binary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "projector-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "projector")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// stack is one test's private names on the shared stack.
type stack struct {
	topicPrefix, indexPrefix, groupPrefix string
	topic                                 string
	es                                    *elasticsearch.Client
	adm                                   *kadm.Client
	prod                                  *kgo.Client
}

func newStack(t *testing.T, partitions int32) *stack {
	t.Helper()
	s := &stack{es: testenv.Elasticsearch(t), adm: testenv.KafkaAdmin(t)}
	name := strings.ReplaceAll(testenv.Name(t), "_", "-")
	s.topicPrefix, s.groupPrefix = name, "g-"+name
	s.indexPrefix = testenv.IndexPrefix(t) + "-"
	s.topic = envelope.Topic(s.topicPrefix, "product")
	testenv.CreateTopic(t, s.adm, s.topic, partitions)
	testenv.CreateTopic(t, s.adm, envelope.DLQTopic(s.topic), 1)
	t.Cleanup(func() { // created by the projector
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, _ = s.adm.DeleteTopics(ctx, projector.QuarantineTopic(s.topic))
	})
	cl, err := kgo.NewClient(kgo.SeedBrokers(testenv.KafkaBrokers()...), kgo.RequiredAcks(kgo.AllISRAcks()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	s.prod = cl
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, _ = s.adm.DeleteGroups(ctx, s.group(), projector.GroupName(s.groupPrefix, "products", 2))
	})
	return s
}

// waitMembers waits until the projection group is stable with n members
// that all hold partitions.
func (s *stack) waitMembers(t *testing.T, n int) {
	t.Helper()
	waitFor(t, 30*time.Second, fmt.Sprintf("group with %d assigned members", n), func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		dg, err := s.adm.DescribeGroups(ctx, s.group())
		if err != nil {
			return false
		}
		g := dg[s.group()]
		if g.State != "Stable" || len(g.Members) != n {
			return false
		}
		for _, m := range g.Members {
			a, ok := m.Assigned.AsConsumer()
			if !ok || len(a.Topics) == 0 {
				return false
			}
		}
		return true
	})
}

func (s *stack) group() string { return projector.GroupName(s.groupPrefix, "products", 0) }
func (s *stack) alias() string { return esindex.AliasName(s.indexPrefix, "products") }

func (s *stack) env(extra ...string) []string {
	return append(append(os.Environ(),
		"KAFKA_BROKERS="+strings.Join(testenv.KafkaBrokers(), ","),
		"ELASTICSEARCH_URL="+testenv.ElasticsearchURL(),
		"TOPIC_PREFIX="+s.topicPrefix, "INDEX_PREFIX="+s.indexPrefix, "GROUP_PREFIX="+s.groupPrefix,
		"PROJECTIONS=products", "LAG_INTERVAL=500ms", "BATCH_MAX_RECORDS=200", "LOG_LEVEL="+logLevel(),
		// These tests produce to Kafka directly: the event store is empty.
		"VERIFY_RATE=0",
	), extra...)
}

type proc struct {
	cmd     *exec.Cmd
	metrics string
	log     *bytes.Buffer
	done    chan error
	exited  chan struct{} // closed when the process ended (done keeps its error for one reader)
}

func (s *stack) start(t *testing.T, name string) *proc {
	t.Helper()
	addr := testenv.FreeAddr(t)
	return startProc(t, name, addr, s.env("METRICS_ADDR="+addr))
}

// startProc starts `projector run` with env (serving on addr) and waits
// until it is ready; the process is killed at cleanup.
func startProc(t *testing.T, name, addr string, env []string) *proc {
	t.Helper()
	p := launchProc(t, name, addr, env)
	waitFor(t, 30*time.Second, name+" ready", func() bool { return p.ready() })
	return p
}

// ready says whether the process answers /readyz with 200.
func (p *proc) ready() bool {
	res, err := http.Get(p.metrics + "/readyz")
	if err != nil {
		return false
	}
	res.Body.Close()
	return res.StatusCode == 200
}

// launchProc is startProc without the wait for readiness.
func launchProc(t *testing.T, name, addr string, env []string) *proc {
	t.Helper()
	cmd := exec.Command(binary(t), "run")
	cmd.Env = env
	var logBuf bytes.Buffer
	pr, pw := io.Pipe()
	cmd.Stderr = pw
	cmd.Stdout = pw
	var mu sync.Mutex
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			mu.Lock()
			logBuf.WriteString(sc.Text() + "\n")
			mu.Unlock()
		}
	}()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, metrics: "http://" + addr, log: &logBuf, done: make(chan error, 1), exited: make(chan struct{})}
	go func() { err := cmd.Wait(); pw.Close(); close(p.exited); p.done <- err }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			mu.Lock()
			t.Logf("%s log:\n%s", name, tail(logBuf.String(), 4000))
			mu.Unlock()
		}
	})
	return p
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// metric sums the samples of a metric family (with an optional label filter).
func (p *proc) metric(t *testing.T, name, contains string) (float64, bool) {
	t.Helper()
	res, err := http.Get(p.metrics + "/metrics")
	if err != nil {
		return 0, false
	}
	defer res.Body.Close()
	var sum float64
	found := false
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		if contains != "" && !strings.Contains(line, contains) {
			continue
		}
		f, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err == nil {
			sum += f
			found = true
		}
	}
	return sum, found
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func event(id, typ string, version int64, payload string) envelope.Envelope {
	now := time.Now().UTC()
	return envelope.Envelope{EventID: uuid.NewString(), EventType: typ, SchemaVersion: 1, AggregateType: "product",
		AggregateID: id, Version: version, OccurredAt: now, RecordedAt: now, Payload: json.RawMessage(payload)}
}

func (s *stack) produce(t *testing.T, evs ...envelope.Envelope) {
	t.Helper()
	recs := make([]*kgo.Record, 0, len(evs))
	for _, e := range evs {
		b, _ := json.Marshal(e)
		recs = append(recs, &kgo.Record{Topic: s.topic, Key: []byte(e.AggregateID), Value: b, Headers: []kgo.RecordHeader{
			{Key: envelope.HeaderEventType, Value: []byte(e.EventType)}, {Key: envelope.HeaderSchemaVersion, Value: []byte("1")},
			{Key: envelope.HeaderEventID, Value: []byte(e.EventID)}, {Key: envelope.HeaderContentType, Value: []byte(envelope.ContentType)},
		}})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.prod.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// history generates a random event history of n products and folds it.
type history struct {
	events []envelope.Envelope
	final  map[string]*products.Doc
	ids    []string
}

func newHistory(t *testing.T, n, maxEvents int) *history {
	t.Helper()
	h := &history{final: map[string]*products.Doc{}}
	perID := map[string][]envelope.Envelope{}
	for i := range n {
		id := uuid.NewString()
		h.ids = append(h.ids, id)
		k := 1 + rand.IntN(maxEvents)
		for v := 1; v <= k; v++ {
			typ := products.Updated
			switch {
			case v == 1:
				typ = products.Created
			case v == k && rand.IntN(5) == 0:
				typ = products.Deleted
			}
			payload := fmt.Sprintf(`{"name":"Product %d rev %d","description":"item %d of the catalogue, revision %d","price":%d.%02d,"stock":%d}`,
				i, v, i, v, rand.IntN(500), rand.IntN(100), rand.IntN(50))
			if typ == products.Deleted {
				payload = `{}`
			}
			perID[id] = append(perID[id], event(id, typ, int64(v), payload))
		}
	}
	// Interleave the aggregates randomly, keeping each one's order.
	for len(perID) > 0 {
		for _, id := range h.ids {
			evs := perID[id]
			if len(evs) == 0 || rand.IntN(2) == 0 {
				continue
			}
			h.events = append(h.events, evs[0])
			if len(evs) == 1 {
				delete(perID, id)
			} else {
				perID[id] = evs[1:]
			}
		}
	}
	for _, e := range h.events {
		d, err := projectProduct(h.final[e.AggregateID], &e)
		if err != nil {
			t.Fatal(err)
		}
		h.final[e.AggregateID] = d
	}
	return h
}

// matches reports how many documents of the index equal the folded state.
func (s *stack) matches(t *testing.T, h *history) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ok := 0
	first := ""
	for start := 0; start < len(h.ids); start += 500 {
		ids := h.ids[start:min(start+500, len(h.ids))]
		hits, err := esindex.MGet(ctx, s.es, s.alias(), ids)
		if err != nil {
			return 0, err.Error()
		}
		for _, id := range ids {
			want := h.final[id]
			hit, found := hits[id]
			if !found {
				if first == "" {
					first = id + " missing"
				}
				continue
			}
			var got products.Doc
			_ = json.Unmarshal(hit.Source, &got)
			if got != *want || hit.Version != want.Version {
				if first == "" {
					first = fmt.Sprintf("%s: got %+v (_version %d), want %+v", id, got, hit.Version, *want)
				}
				continue
			}
			ok++
		}
	}
	return ok, first
}

func (s *stack) waitConverged(t *testing.T, h *history, d time.Duration) {
	t.Helper()
	var last string
	deadline := time.Now().Add(d)
	for {
		n, first := s.matches(t, h)
		if n == len(h.ids) {
			return
		}
		last = fmt.Sprintf("%d of %d documents match; first mismatch: %s", n, len(h.ids), first)
		if time.Now().After(deadline) {
			t.Fatalf("index did not converge to the folded state within %s: %s", d, last)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

func (s *stack) committedLag(t *testing.T) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	lags, err := projector.Lag(ctx, s.adm, s.group(), s.topic)
	if err != nil {
		t.Fatal(err)
	}
	var sum int64
	for _, l := range lags {
		sum += l
	}
	return sum
}

// Two projector processes share the partitions; one is SIGKILLed while
// events stream in. The survivor takes over its partitions and the final
// index equals the state folded from the events, for every aggregate.
func TestTwoProjectorsOneKilled(t *testing.T) {
	s := newStack(t, 6)
	h := newHistory(t, 400, 8)
	a := s.start(t, "projector-a")
	b := s.start(t, "projector-b")

	s.waitMembers(t, 2)
	// Stream the events in chunks; kill b in the middle, after it applied some.
	chunk := len(h.events) / 10
	for i := 0; i < 10; i++ {
		end := (i + 1) * chunk
		if i == 9 {
			end = len(h.events)
		}
		s.produce(t, h.events[i*chunk:end]...)
		if i == 4 {
			waitFor(t, 20*time.Second, "both projectors applying", func() bool {
				x, _ := a.metric(t, "cqrsflow_projector_events_total", `outcome="applied"`)
				y, _ := b.metric(t, "cqrsflow_projector_events_total", `outcome="applied"`)
				return x > 0 && y > 0
			})
			if err := b.cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			<-b.done
			b.done <- nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.waitConverged(t, h, 90*time.Second)
	waitFor(t, 30*time.Second, "committed lag 0", func() bool { return s.committedLag(t) == 0 })
	waitFor(t, 10*time.Second, "survivor reports lag 0 and sync lag 0", func() bool {
		lag, ok1 := a.metric(t, "cqrsflow_projector_consumer_lag_records", "")
		sync, ok2 := a.metric(t, "cqrsflow_projector_sync_lag_seconds", "")
		return ok1 && ok2 && lag == 0 && sync == 0
	})
	applied, _ := a.metric(t, "cqrsflow_projector_events_total", `outcome="applied"`)
	t.Logf("%d events over %d products; survivor applied %.0f", len(h.events), len(h.ids), applied)
}

// SIGTERM: the projector finishes, commits and leaves the group (exit 0,
// committed offsets at the end, group empty at once). Replay with the CLI
// (refused while the group is live) and with Kafka's own
// kafka-consumer-groups leaves the index unchanged and the lag back at 0.
func TestSigtermAndReplay(t *testing.T) {
	s := newStack(t, 3)
	h := newHistory(t, 150, 5)
	s.produce(t, h.events...)
	p := s.start(t, "projector")
	s.waitConverged(t, h, 60*time.Second)

	// Replay refused while the group has a live member.
	cmd := exec.Command(binary(t), "replay", "--projection", "products", "--to", "earliest")
	cmd.Env = s.env()
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "live members") {
		t.Fatalf("replay while running: err=%v output %s; want a refusal naming live members", err, out)
	}

	stopGracefully(t, p)
	if lag := s.committedLag(t); lag != 0 {
		t.Fatalf("after SIGTERM the committed lag is %d, want 0 (flush + commit before leaving)", lag)
	}
	before := s.snapshot(t, h)

	// Replay with the project's CLI, then run again.
	cmd = exec.Command(binary(t), "replay", "--projection", "products", "--to", "earliest", "--wait", "5s")
	cmd.Env = s.env()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("replay: %v\n%s", err, out)
	}
	if lag := s.committedLag(t); lag != int64(len(h.events)) {
		t.Fatalf("after replay the lag is %d, want all %d events", lag, len(h.events))
	}
	p = s.start(t, "projector-replayed")
	waitFor(t, 60*time.Second, "replay consumed", func() bool {
		lag, ok := p.metric(t, "cqrsflow_projector_consumer_lag_records", "")
		noop, _ := p.metric(t, "cqrsflow_projector_events_total", `outcome="stale"`)
		dup, _ := p.metric(t, "cqrsflow_projector_events_total", `outcome="duplicate"`)
		return ok && lag == 0 && noop+dup == float64(len(h.events))
	})
	if applied, _ := p.metric(t, "cqrsflow_projector_events_total", `outcome="applied"`); applied != 0 {
		t.Errorf("replay applied %v events, want 0 (all no-ops)", applied)
	}
	if after := s.snapshot(t, h); !equalSnap(before, after) {
		t.Fatalf("index changed by the CLI replay")
	}
	stopGracefully(t, p)

	// Replay with Kafka's own tool.
	script, _ := filepath.Abs("../deploy/local/kafka-cli.sh")
	cmd = exec.Command(script, "consumer-groups", "--bootstrap-server", strings.Join(testenv.KafkaBrokers(), ","),
		"--group", s.group(), "--topic", s.topic, "--reset-offsets", "--to-earliest", "--execute")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("kafka-consumer-groups --reset-offsets: %v\n%s", err, out)
	}
	if lag := s.committedLag(t); lag != int64(len(h.events)) {
		t.Fatalf("after kafka-consumer-groups the lag is %d, want %d", lag, len(h.events))
	}
	p = s.start(t, "projector-kafka-replayed")
	waitFor(t, 60*time.Second, "kafka-tool replay consumed", func() bool {
		lag, ok := p.metric(t, "cqrsflow_projector_consumer_lag_records", "")
		noop, _ := p.metric(t, "cqrsflow_projector_events_total", `outcome="stale"`)
		dup, _ := p.metric(t, "cqrsflow_projector_events_total", `outcome="duplicate"`)
		return ok && lag == 0 && noop+dup == float64(len(h.events))
	})
	if after := s.snapshot(t, h); !equalSnap(before, after) {
		t.Fatalf("index changed by the kafka-consumer-groups replay")
	}
	if lag := s.committedLag(t); lag != 0 {
		t.Errorf("committed lag %d after replay, want 0", lag)
	}
}

func stopGracefully(t *testing.T, p *proc) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-p.done:
		if err != nil {
			t.Fatalf("projector exited with %v after SIGTERM, want 0", err)
		}
		p.done <- nil
	case <-time.After(30 * time.Second):
		t.Fatal("projector did not exit within 30s of SIGTERM")
	}
}

type snap map[string]string

func (s *stack) snapshot(t *testing.T, h *history) snap {
	t.Helper()
	out := snap{}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for start := 0; start < len(h.ids); start += 500 {
		hits, err := esindex.MGet(ctx, s.es, s.alias(), h.ids[start:min(start+500, len(h.ids))])
		if err != nil {
			t.Fatal(err)
		}
		for id, hit := range hits {
			out[id] = strconv.FormatInt(hit.Version, 10) + " " + string(hit.Source)
		}
	}
	if len(out) != len(h.ids) {
		t.Fatalf("snapshot has %d of %d documents", len(out), len(h.ids))
	}
	return out
}

func equalSnap(a, b snap) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// Rebuild into products_v2 while a live projector runs and a reader
// queries the alias in a loop: the reader never gets an error or misses an
// existing product; the alias ends on v2, v1 is kept, and the live
// projector's later writes land in v2.
func TestRebuildUnderReader(t *testing.T) {
	s := newStack(t, 3)
	h := newHistory(t, 300, 6)
	s.produce(t, h.events...)
	live := s.start(t, "projector-live")
	s.waitConverged(t, h, 60*time.Second)
	_ = live
	if err := esindex.Refresh(context.Background(), s.es, s.alias()); err != nil {
		t.Fatal(err)
	}

	gin.SetMode(gin.TestMode)
	r := gin.New()
	query.Register(r, query.New(s.es, s.indexPrefix, slog.New(slog.NewTextHandler(io.Discard, nil))))
	srv := httptest.NewServer(r)
	defer srv.Close()
	var existing []string
	for _, id := range h.ids {
		if !h.final[id].Deleted {
			existing = append(existing, id)
		}
	}
	stopReader := make(chan struct{})
	readerErr := make(chan error, 1)
	var reads int
	go func() {
		defer close(readerErr)
		for i := 0; ; i++ {
			select {
			case <-stopReader:
				return
			default:
			}
			id := existing[i%len(existing)]
			res, err := http.Get(srv.URL + "/v1/products/" + id)
			if err != nil {
				readerErr <- err
				return
			}
			body, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode != 200 {
				readerErr <- fmt.Errorf("GET %s during rebuild: %d %s", id, res.StatusCode, body)
				return
			}
			res, err = http.Get(srv.URL + "/v1/products/search?q=catalogue&limit=5")
			if err != nil {
				readerErr <- err
				return
			}
			body, _ = io.ReadAll(res.Body)
			res.Body.Close()
			var page query.Page[query.Product]
			_ = json.Unmarshal(body, &page)
			if res.StatusCode != 200 || page.Total != len(existing) {
				readerErr <- fmt.Errorf("search during rebuild: %d total %d, want %d", res.StatusCode, page.Total, len(existing))
				return
			}
			reads++
			runtime.Gosched()
		}
	}()

	cmd := exec.Command(binary(t), "rebuild", "--projection", "products", "--version", "2")
	cmd.Env = s.env()
	out, err := cmd.CombinedOutput()
	close(stopReader)
	if rerr := <-readerErr; rerr != nil {
		t.Fatalf("reader: %v", rerr)
	}
	if err != nil {
		t.Fatalf("rebuild: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "swapped") || !strings.Contains(string(out), "consumed") {
		t.Errorf("rebuild output lacks progress/swap lines:\n%s", out)
	}
	t.Logf("reader made %d reads during the rebuild", reads)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	targets, err := esindex.AliasTargets(ctx, s.es, s.alias())
	v2 := esindex.IndexName(s.indexPrefix, "products", 2)
	if err != nil || len(targets) != 1 || targets[0] != v2 {
		t.Fatalf("alias targets %v (%v), want [%s]", targets, err, v2)
	}
	if n, err := esindex.Count(ctx, s.es, esindex.IndexName(s.indexPrefix, "products", 1)); err != nil || n != int64(len(h.ids)) {
		t.Errorf("old index v1 has %d docs (%v), want it kept with %d", n, err, len(h.ids))
	}
	s.waitConverged(t, h, 10*time.Second) // through the alias: v2 is complete

	// The live projector now writes through the alias into v2.
	id := existing[0]
	next := h.final[id].Version + 1
	e := event(id, products.Updated, next, `{"name":"After rebuild","description":"x","price":1,"stock":1}`)
	s.produce(t, e)
	waitFor(t, 30*time.Second, "live update in v2", func() bool {
		hits, err := esindex.MGet(ctx, s.es, v2, []string{id})
		return err == nil && hits[id].Version == next
	})

	// Rebuilding into the live version is refused; v3 with --drop-old
	// deletes v2 after the swap.
	cmd = exec.Command(binary(t), "rebuild", "--projection", "products", "--version", "2")
	cmd.Env = s.env()
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "already points at") {
		t.Errorf("rebuild into the live index: err %v, output %s", err, out)
	}
	cmd = exec.Command(binary(t), "rebuild", "--projection", "products", "--version", "3", "--drop-old")
	cmd.Env = s.env()
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "dropped old index "+v2) {
		t.Fatalf("rebuild v3 --drop-old: %v\n%s", err, out)
	}
	v3 := esindex.IndexName(s.indexPrefix, "products", 3)
	if targets, err := esindex.AliasTargets(ctx, s.es, s.alias()); err != nil || len(targets) != 1 || targets[0] != v3 {
		t.Errorf("alias targets %v (%v), want [%s]", targets, err, v3)
	}
	if _, err := esindex.Count(ctx, s.es, v2); err == nil {
		t.Errorf("%s still exists after --drop-old", v2)
	}
	if hits, err := esindex.MGet(ctx, s.es, v3, []string{id}); err != nil || hits[id].Version != next {
		t.Errorf("v3 lacks the live update: %+v %v", hits[id], err)
	}
}

// cli runs a projector admin command against the test's stack and
// returns its stdout; a failure fails the test with its output.
func (s *stack) cli(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command(binary(t), args...)
	cmd.Env = s.env()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("projector %v: %v\n%s%s", args, err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

// A projector is SIGKILLed while an aggregate is quarantined (an event
// type it does not know, mid-stream) and events keep coming while it is
// down. After a restart nothing is lost: the new process reads the
// quarantine from its topic and holds the aggregate's new event at once
// (nothing parks), applies everything else, and `projector dlq list`
// shows the quarantine and the held events. `projector dlq skip` then
// drops the unknown event: the document ends at the latest version, equal
// to the fold of the other events, and the worker counts the skip.
func TestKillWhileQuarantined(t *testing.T) {
	s := newStack(t, 3)
	h := newHistory(t, 100, 4)
	x := uuid.NewString()
	xs := []envelope.Envelope{
		event(x, products.Created, 1, `{"name":"x1","description":"d","price":1,"stock":1}`),
		event(x, "ProductRenamed", 2, `{"name":"renamed"}`),
		event(x, products.Updated, 3, `{"name":"x3","description":"d","price":3,"stock":3}`),
		event(x, products.Updated, 4, `{"name":"x4","description":"d","price":4,"stock":4}`),
	}
	p := s.start(t, "projector")
	half := len(h.events) / 2
	s.produce(t, h.events[:half]...)
	s.produce(t, xs...)
	poisoned := time.Now()
	s.produce(t, h.events[half:]...)
	s.waitConverged(t, h, 60*time.Second)
	t.Logf("poison → %d events of %d other aggregates produced after it all applied: %s",
		len(h.events)-half, len(h.ids), time.Since(poisoned).Round(time.Millisecond))
	waitFor(t, 30*time.Second, "x quarantined, v3 and v4 held, committed lag 0", func() bool {
		q, _ := p.metric(t, "cqrsflow_projector_quarantined_aggregates", "")
		held, _ := p.metric(t, "cqrsflow_projector_held_events_total", "")
		return q == 1 && held == 2 && s.committedLag(t) == 0
	})

	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p.done
	p.done <- nil
	x5 := event(x, products.Updated, 5, `{"name":"x5","description":"d","price":5,"stock":5}`)
	h2 := newHistory(t, 50, 3)
	s.produce(t, append([]envelope.Envelope{x5}, h2.events...)...)

	p2 := s.start(t, "projector-restarted")
	s.waitConverged(t, h2, 60*time.Second)
	waitFor(t, 30*time.Second, "the restarted worker knows the quarantine and holds v5", func() bool {
		q, _ := p2.metric(t, "cqrsflow_projector_quarantined_aggregates", "")
		held, _ := p2.metric(t, "cqrsflow_projector_held_events_total", "")
		return q == 1 && held == 1 && s.committedLag(t) == 0
	})
	if parked, _ := p2.metric(t, "cqrsflow_projector_parked_events", ""); parked != 0 {
		t.Errorf("%v events parked after the restart, want 0 (held, not parked)", parked)
	}
	var l projector.DLQListing
	if err := json.Unmarshal([]byte(s.cli(t, "dlq", "list", "--projection", "products", "--aggregate", x, "--json")), &l); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range l.Records {
		got = append(got, fmt.Sprintf("%s:%s@%d", r.Status, r.ReasonCode, r.Version))
	}
	want := []string{"pending:unprojectable@2", "pending:quarantined_after@3", "pending:quarantined_after@4", "pending:quarantined_after@5"}
	if !slices.Equal(got, want) || len(l.Quarantined) != 1 || l.Quarantined[0].BlockedVersion != 2 {
		t.Fatalf("dlq list: records %v, quarantined %+v; want %v and x blocked at v2", got, l.Quarantined, want)
	}
	t.Logf("dlq list (table):\n%s", s.cli(t, "dlq", "list", "--projection", "products"))

	out := s.cli(t, "dlq", "skip", "--projection", "products", "--aggregate", x, "--version", "2")
	t.Logf("dlq skip:\n%s", out)
	d, err := projectProduct(nil, &xs[0])
	if err != nil {
		t.Fatal(err)
	}
	d.Version, d.LastEventID = 2, xs[1].EventID // what skip writes: v2, content unchanged
	for _, e := range []envelope.Envelope{xs[2], xs[3], x5} {
		if d, err = projectProduct(d, &e); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	hits, err := esindex.MGet(ctx, s.es, s.alias(), []string{x})
	var doc products.Doc
	if err == nil {
		err = json.Unmarshal(hits[x].Source, &doc)
	}
	if err != nil || hits[x].Version != 5 || doc != *d {
		t.Fatalf("x after skip: %+v (v%d, %v), want %+v", doc, hits[x].Version, err, *d)
	}
	waitFor(t, 30*time.Second, "the worker saw the release and counted the skip", func() bool {
		q, _ := p2.metric(t, "cqrsflow_projector_quarantined_aggregates", "")
		skipped, _ := p2.metric(t, "cqrsflow_projector_skipped_events_total", "")
		return q == 0 && skipped == 1
	})
	if err := json.Unmarshal([]byte(s.cli(t, "dlq", "list", "--projection", "products", "--json")), &l); err != nil {
		t.Fatal(err)
	}
	if len(l.Records) != 0 || len(l.Quarantined) != 0 {
		t.Errorf("after the skip: %d pending dead letters, %d quarantined; want none", len(l.Records), len(l.Quarantined))
	}
	s.waitConverged(t, h, 10*time.Second) // nothing of the first history lost either
}

func logLevel() string {
	if l := os.Getenv("TEST_PROJECTOR_LOG_LEVEL"); l != "" {
		return l
	}
	return "info"
}

// projectProduct folds e as the projector does: through the products
// projection (older schema versions upcast, versions checked), then Apply.
func projectProduct(cur *products.Doc, e *envelope.Envelope) (*products.Doc, error) {
	var c any
	if cur != nil {
		c = cur
	}
	d, err := products.Projection.Apply(c, e)
	if err != nil {
		return nil, err
	}
	return d.(*products.Doc), nil
}
