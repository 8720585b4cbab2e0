//go:build integration

package projector_test

import (
	"encoding/json"
	"fmt"
	"log/slog"
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

// At MaxParked parked events the aggregates parked longest are quarantined
// (their parked events go to the DLQ as version_gap) until fewer remain:
// memory stays bounded and fetching never stops, so a record produced
// afterwards is indexed. Once the gaps are closed elsewhere (an operator
// writing the missing versions), the still-parked events apply by the
// periodic re-check, and a redrive applies the quarantined ones; every
// key ends at its last version and the committed lag is 0.
func TestProjectorQuarantinesAtParkedCap(t *testing.T) {
	es := testenv.Elasticsearch(t)
	topic := testenv.Topic(t, 1)
	adm := testenv.KafkaAdmin(t)
	testenv.CreateTopic(t, adm, envelope.DLQTopic(topic), 1)
	index := setupIndex(t, es)
	group := "g-" + topic
	prod := producer(t)
	run := startRunner(t, es, topic, index, group, func(c *projector.Config) {
		c.MaxParked, c.ParkedRecheck, c.ParkTimeout = 5, 200*time.Millisecond, time.Hour
	})
	m := run.metrics
	parked := func() float64 { return testutil.ToFloat64(m.Parked.WithLabelValues("products")) }
	quarantined := func() float64 { return testutil.ToFloat64(m.Quarantined.WithLabelValues("products")) }

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
	waitFor(t, 30*time.Second, "the oldest gaps quarantined at the cap", func() bool {
		return parked() < 5 && parked()+quarantined() == keys
	})
	if got := testutil.ToFloat64(m.DeadLetters.WithLabelValues("products", projector.ReasonVersionGap)); got != quarantined() {
		t.Errorf("version_gap dead letters %v, want one per quarantined aggregate (%v)", got, quarantined())
	}

	produce(t, prod, record(topic, productEvent("late", products.Created, 1, payload(99))))
	waitFor(t, 10*time.Second, "a record produced after the cap indexed (fetching never stops)", func() bool {
		hits, err := esindex.MGet(t.Context(), es, index, []string{"late"})
		return err == nil && len(hits) == 1
	})

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
	waitFor(t, 30*time.Second, "parked events applied by the re-check", func() bool { return parked() == 0 })
	a, err := projector.NewDLQAdmin(products.Projection, topic, []kgo.Opt{kgo.SeedBrokers(testenv.KafkaBrokers()...)}, es, index, slog.New(slog.NewTextHandler(testWriter(t), nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	rep, err := a.Redrive(t.Context(), projector.DLQFilter{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("redrive: %+v", rep)
	ids := []string{"late"}
	for i := range keys {
		ids = append(ids, fmt.Sprintf("g%d", i))
	}
	waitFor(t, 30*time.Second, "every key at its last version, nothing quarantined, committed lag 0", func() bool {
		hits, err := esindex.MGet(t.Context(), es, index, ids)
		if err != nil || len(hits) != keys+1 {
			return false
		}
		for i := range keys {
			if hits[fmt.Sprintf("g%d", i)].Version != 3 {
				return false
			}
		}
		lags, err := projector.Lag(t.Context(), adm, group, topic)
		return err == nil && lags[0] == 0 && quarantined() == 0
	})
}
