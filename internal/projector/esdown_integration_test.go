//go:build integration

package projector_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kgo"

	"cqrsflow/internal/envelope"
	"cqrsflow/internal/esindex"
	"cqrsflow/internal/projection/products"
	"cqrsflow/internal/projector"
	"cqrsflow/internal/testenv"
)

// faultProxy forwards to the real Elasticsearch; while down it answers
// with the given status (429 or 503) instead, counting the attempts.
type faultProxy struct {
	down     atomic.Int32 // status to answer, 0 = forward
	attempts atomic.Int64
	next     http.Handler
}

func (f *faultProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if st := f.down.Load(); st != 0 {
		f.attempts.Add(1)
		w.Header().Set("X-Elastic-Product", "Elasticsearch")
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(int(st))
		fmt.Fprintf(w, `{"error":{"type":"injected","reason":"injected %d"},"status":%d}`, st, st)
		return
	}
	f.next.ServeHTTP(w, r)
}

// Elasticsearch rejecting (429) then failing (503): the projector backs
// off without a busy loop, commits nothing, reports growing sync lag, and
// recovers by itself once Elasticsearch is back, applying everything.
func TestProjectorElasticsearchDown(t *testing.T) {
	es := testenv.Elasticsearch(t)
	topic := testenv.Topic(t, 2)
	adm := testenv.KafkaAdmin(t)
	testenv.CreateTopic(t, adm, envelope.DLQTopic(topic), 1)
	index := setupIndex(t, es)
	target, _ := url.Parse(testenv.ElasticsearchURL())
	fp := &faultProxy{next: httputil.NewSingleHostReverseProxy(target)}
	srv := httptest.NewServer(fp)
	defer srv.Close()
	proxied, err := esindex.New(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	group := "g-" + topic
	prod := producer(t)
	run := startRunner(t, proxied, topic, index, group)
	m := run.metrics

	fp.down.Store(http.StatusTooManyRequests)
	ids := []string{}
	var recs []*kgo.Record
	for i := range 20 {
		id := uuid.NewString()
		ids = append(ids, id)
		recs = append(recs, record(topic, productEvent(id, products.Created, 1, fmt.Sprintf(`{"name":"P%d","description":"d","price":1,"stock":1}`, i))))
	}
	produce(t, prod, recs...)
	waitFor(t, 10*time.Second, "requests rejected", func() bool { return fp.attempts.Load() > 0 })
	time.Sleep(1500 * time.Millisecond)
	fp.down.Store(http.StatusServiceUnavailable)
	time.Sleep(1500 * time.Millisecond)

	// Backoff (50ms doubling to 1s in this test): a handful of attempts in
	// 3s, not thousands.
	if n := fp.attempts.Load(); n > 40 {
		t.Errorf("%d attempts against a down Elasticsearch in ~3s: busy loop", n)
	}
	if got := testutil.ToFloat64(m.Events.WithLabelValues("products", projector.OutcomeApplied)); got != 0 {
		t.Errorf("applied %v while Elasticsearch was down", got)
	}
	ctxLag := func() int64 {
		lags, err := projector.Lag(t.Context(), adm, group, topic)
		if err != nil {
			t.Fatal(err)
		}
		var s int64
		for _, l := range lags {
			s += l
		}
		return s
	}
	if lag := ctxLag(); lag != 20 {
		t.Errorf("committed lag %d while down, want 20 (no commit without an Elasticsearch ack)", lag)
	}
	s1 := testutil.ToFloat64(m.SyncLag.WithLabelValues("products"))
	time.Sleep(600 * time.Millisecond)
	s2 := testutil.ToFloat64(m.SyncLag.WithLabelValues("products"))
	if s1 <= 0 || s2 <= s1 {
		t.Errorf("sync lag %v then %v while stuck, want > 0 and growing", s1, s2)
	}

	fp.down.Store(0)
	waitFor(t, 30*time.Second, "recovery", func() bool {
		return testutil.ToFloat64(m.Events.WithLabelValues("products", projector.OutcomeApplied)) == 20 && ctxLag() == 0
	})
	hits, err := esindex.MGet(t.Context(), es, index, ids)
	if err != nil || len(hits) != 20 {
		t.Fatalf("after recovery %d of 20 documents (%v)", len(hits), err)
	}
	waitFor(t, 10*time.Second, "sync lag back to 0", func() bool {
		return testutil.ToFloat64(m.SyncLag.WithLabelValues("products")) == 0
	})
}
