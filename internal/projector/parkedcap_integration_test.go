//go:build integration

package projector_test

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kgo"

	"cqrsflow/internal/envelope"
	"cqrsflow/internal/esindex"
	"cqrsflow/internal/projection/products"
	"cqrsflow/internal/projector"
	"cqrsflow/internal/testenv"
)

// At MaxParked parked events the worker stops fetching (memory stays
// bounded): a record produced afterwards is not indexed and the committed
// offset stays at the first parked record. Once the gaps are closed
// elsewhere (an operator writing the missing versions), the periodic
// re-check applies the parked events, fetching resumes and the later
// record is indexed.
func TestProjectorPausesAtParkedCap(t *testing.T) {
	es := testenv.Elasticsearch(t)
	topic := testenv.Topic(t, 1)
	adm := testenv.KafkaAdmin(t)
	testenv.CreateTopic(t, adm, envelope.DLQTopic(topic), 1)
	index := setupIndex(t, es)
	group := "g-" + topic
	prod := producer(t)
	run := startRunner(t, es, topic, index, group, func(c *projector.Config) {
		c.MaxParked, c.ParkedRecheck = 5, 200*time.Millisecond
	})
	m := run.metrics
	paused := func() float64 { return testutil.ToFloat64(m.FetchPaused.WithLabelValues("products")) }
	parked := func() float64 { return testutil.ToFloat64(m.Parked.WithLabelValues("products")) }

	const keys = 8
	payload := func(i int) string { return fmt.Sprintf(`{"name":"G%d","description":"d","price":1,"stock":1}`, i) }
	var recs []*kgo.Record
	var v1 []envelope.Envelope
	for i := range keys {
		e := productEvent(fmt.Sprintf("g%d", i), products.Created, 1, payload(i))
		v1 = append(v1, e)
		recs = append(recs, record(topic, e))
	}
	for i := range keys { // v2 never arrives: v3 parks
		recs = append(recs, record(topic, productEvent(fmt.Sprintf("g%d", i), products.Updated, 3, payload(i))))
	}
	produce(t, prod, recs...)
	waitFor(t, 30*time.Second, "fetching paused at the cap", func() bool { return paused() == 1 && parked() == keys })

	produce(t, prod, record(topic, productEvent("late", products.Created, 1, payload(99))))
	time.Sleep(1500 * time.Millisecond)
	if hits, err := esindex.MGet(t.Context(), es, index, []string{"late"}); err != nil || len(hits) != 0 {
		t.Fatalf("a record produced after the pause was indexed (%d hits, %v): fetching was not paused", len(hits), err)
	}
	lags, err := projector.Lag(t.Context(), adm, group, topic)
	if err != nil {
		t.Fatal(err)
	}
	if lag := lags[0]; lag != keys+1 {
		t.Errorf("committed lag %d while paused, want %d (commit stops at the first parked record)", lag, keys+1)
	}

	// An operator closes the gaps: v2 of every key written to the index.
	var ops []esindex.Op
	for i := range keys {
		doc, err := products.Projection.Apply(nil, &v1[i])
		if err != nil {
			t.Fatal(err)
		}
		v2 := productEvent(fmt.Sprintf("g%d", i), products.Updated, 2, payload(i))
		if doc, err = products.Projection.Apply(doc, &v2); err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(doc)
		ops = append(ops, esindex.Op{Index: index, ID: v2.AggregateID, Version: 2, Doc: b})
	}
	if res, err := esindex.Bulk(t.Context(), es, ops, "true"); err != nil || res[0].Err != "" {
		t.Fatalf("closing the gaps: %v %+v", err, res)
	}
	waitFor(t, 30*time.Second, "gaps closed, fetching resumed, the later record indexed", func() bool {
		hits, err := esindex.MGet(t.Context(), es, index, []string{"late", "g0", "g7"})
		return err == nil && paused() == 0 && parked() == 0 && len(hits) == 3 && hits["g0"].Version == 3 && hits["g7"].Version == 3
	})
	waitFor(t, 10*time.Second, "everything committed", func() bool {
		lags, err := projector.Lag(t.Context(), adm, group, topic)
		return err == nil && lags[0] == 0
	})
}
