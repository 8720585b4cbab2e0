package projector

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"cqrsflow/internal/esindex"
	"cqrsflow/internal/projection/products"
)

// A backlog is taken in batches of about BatchMaxBytes: a batch stops
// growing once it reaches the bound (records of one size end it at most
// one record past it), every record comes exactly once and in order, and
// a record larger than the bound still goes.
func TestPollBoundsBatchBytes(t *testing.T) {
	const (
		topic    = "cf.product.events"
		records  = 400
		maxBytes = 64 << 10
	)
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, topic))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	prod, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.DefaultProduceTopic(topic))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	var recs []*kgo.Record
	for i := range records {
		v := strings.Repeat("x", 1000)
		if i == 200 {
			v = strings.Repeat("y", 2*maxBytes) // larger than a batch may be
		}
		recs = append(recs, &kgo.Record{Key: []byte("k"), Value: []byte(fmt.Sprintf("%04d%s", i, v))})
	}
	if err := prod.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}

	cfg := Config{Brokers: c.ListenAddrs(), Group: "g", Topic: topic, Index: "i", BatchMaxBytes: maxBytes,
		FlushInterval: 200 * time.Millisecond, DLQPartitions: 1, SessionTimeout: 6 * time.Second}
	r, err := newRunner(cfg, products.Projection, &memStore{docs: map[string]esindex.Hit{}},
		NewMetrics(prometheus.NewRegistry()), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer r.cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	next, byBytes := 0, 0
	for next < records && ctx.Err() == nil {
		batch := r.poll(ctx)
		r.cl.AllowRebalance()
		// sum leaves out the oversized record: the chunk it arrives in
		// was sized for the records before it.
		sum := 0
		for i, rec := range batch {
			if sum >= maxBytes {
				t.Fatalf("batch went on past %d bytes: record %d of %d at %d bytes", maxBytes, i, len(batch), sum)
			}
			if n := RecordBytes(rec); n < maxBytes {
				sum += n
			}
			if got := string(rec.Value[:4]); got != fmt.Sprintf("%04d", next) {
				t.Fatalf("record %s, want %04d (lost, repeated or out of order)", got, next)
			}
			next++
		}
		if sum >= maxBytes {
			byBytes++
		}
	}
	if next != records {
		t.Fatalf("polled %d of %d records", next, records)
	}
	if byBytes < 4 {
		t.Errorf("%d batches ended at the byte bound; %d records of 1 KB over a 64 KiB bound make at least 5", byBytes, records)
	}
}
