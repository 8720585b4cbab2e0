package main

// The projector part (issue 5): prefill a private topic with events over a
// set of products (each product: ProductCreated then ProductUpdated…,
// aggregates interleaved the way concurrent writers interleave them), then
// measure the projector runtime's throughput with 1 and 2 workers (a fresh
// consumer group and a fresh index each run, timed from start until the
// group's committed offsets reach the end of the topic), and, in the same
// run, a raw _bulk loader that indexes the same final documents (no Kafka,
// no _mget, no version checks) into a fresh index with the same mapping.
// The ratio compares the time to the same final index: projector events/s
// vs. events/s-equivalent of the raw loader (events / raw time). A second
// raw baseline indexes one document per event (the same number of index
// operations the projector would issue without in-batch folding).

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"os"
	"runtime"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/elastic/go-elasticsearch/v8"
	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/errgroup"

	"cqrsflow/internal/config"
	"cqrsflow/internal/envelope"
	"cqrsflow/internal/esindex"
	"cqrsflow/internal/obs"
	"cqrsflow/internal/projection/products"
	"cqrsflow/internal/projector"
	"cqrsflow/internal/topics"
)

func init() { parts["projector"] = runProjectorBench }

func runProjectorBench(ctx context.Context, args []string) error {
	quick := quickMode()
	fs := flag.NewFlagSet("bench projector", flag.ContinueOnError)
	brokers := fs.String("kafka-brokers", envDefault("KAFKA_BROKERS", config.DefaultKafkaBrokers), "Kafka brokers")
	esURL := fs.String("elasticsearch-url", envDefault("ELASTICSEARCH_URL", config.DefaultElasticsearchURL), "Elasticsearch URL")
	nEvents := fs.Int("events", pickInt(quick, 20000, 200000), "events to prefill")
	nProducts := fs.Int("products", pickInt(quick, 2000, 20000), "products the events are spread over")
	partitions := fs.Int("partitions", 6, "partitions of the bench topic")
	batch := fs.Int("batch", 100000, "BATCH_MAX_RECORDS of the projector (default: the projector's default) and docs per raw _bulk request")
	workerList := fs.String("workers", "1,2", "worker counts to measure")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the projector runs (not the raw loaders) to this file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *nProducts < 1 || *nEvents < *nProducts {
		return errors.New("need events >= products >= 1")
	}
	started := time.Now()
	var rb [4]byte
	_, _ = rand.Read(rb[:])
	name := "bench-projector-" + hex.EncodeToString(rb[:])
	topic := envelope.Topic(name, "product")
	log := slog.New(slog.NewTextHandler(io.Discard, nil))

	cl, err := kgo.NewClient(kgo.SeedBrokers(config.SplitList(*brokers)...), kgo.ProducerLinger(5*time.Millisecond),
		kgo.RequiredAcks(kgo.AllISRAcks()), kgo.ProducerBatchMaxBytes(1<<20))
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	for _, t := range []string{topic, envelope.DLQTopic(topic)} {
		p := int32(*partitions)
		if t != topic {
			p = 1
		}
		if err := topics.Ensure(ctx, adm, topics.Spec{Name: t, Partitions: p, ReplicationFactor: 1, Configs: topics.InfiniteRetention(), Log: log}); err != nil {
			return fmt.Errorf("creating %s (run `make up`): %w", t, err)
		}
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, _ = adm.DeleteTopics(dctx, topic, envelope.DLQTopic(topic))
	}()
	es, err := esindex.New(*esURL)
	if err != nil {
		return err
	}
	if err := esindex.Ping(ctx, es); err != nil {
		return fmt.Errorf("elasticsearch at %s (run `make up`): %w", *esURL, err)
	}

	// Events: round r gives every product that still has events its next
	// one, products shuffled per round.
	fmt.Printf("prefilling %s with %d events over %d products…\n", topic, *nEvents, *nProducts)
	ids := make([]string, *nProducts)
	for i := range ids {
		ids[i] = uuid.NewString()
	}
	perProduct := *nEvents / *nProducts
	extra := *nEvents % *nProducts
	final := map[string]*products.Doc{}
	var perEventDocs []esindex.Op
	version := map[string]int64{}
	produced := 0
	var recs []*kgo.Record
	flush := func() error {
		if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			return fmt.Errorf("prefilling: %w", err)
		}
		recs = recs[:0]
		return nil
	}
	t0 := time.Now().UTC()
	for round := 0; produced < *nEvents; round++ {
		order := mrand.Perm(len(ids))
		for _, i := range order {
			n := perProduct
			if i < extra {
				n++
			}
			if round >= n {
				continue
			}
			id := ids[i]
			version[id]++
			v := version[id]
			typ := products.Updated
			if v == 1 {
				typ = products.Created
			}
			payload := fmt.Sprintf(`{"name":"Product %d rev %d","description":"benchmark product number %d in revision %d with a few more words to search","price":%d.%02d,"stock":%d}`,
				i, v, i, v, mrand.IntN(1000), mrand.IntN(100), mrand.IntN(100))
			e := envelope.Envelope{EventID: uuid.NewString(), EventType: typ, SchemaVersion: 1, AggregateType: "product",
				AggregateID: id, Version: v, OccurredAt: t0, RecordedAt: t0, GlobalPosition: int64(produced + 1), Payload: json.RawMessage(payload)}
			d, err := products.Apply(final[id], &e)
			if err != nil {
				return err
			}
			final[id] = d
			db, _ := json.Marshal(d)
			perEventDocs = append(perEventDocs, esindex.Op{ID: id, Version: v, Doc: db})
			b, _ := json.Marshal(e)
			recs = append(recs, &kgo.Record{Topic: topic, Key: []byte(id), Value: b, Headers: []kgo.RecordHeader{
				{Key: envelope.HeaderEventType, Value: []byte(typ)}, {Key: envelope.HeaderSchemaVersion, Value: []byte("1")},
				{Key: envelope.HeaderEventID, Value: []byte(e.EventID)}, {Key: envelope.HeaderContentType, Value: []byte(envelope.ContentType)},
			}})
			produced++
			if len(recs) == 5000 {
				if err := flush(); err != nil {
					return err
				}
			}
		}
	}
	if err := flush(); err != nil {
		return err
	}
	fmt.Printf("prefilled in %.1fs\n", time.Since(t0).Seconds())

	type run struct {
		workers int
		seconds float64
		rate    float64
	}
	var runs []run
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
	}
	for _, ws := range config.SplitList(*workerList) {
		var w int
		if _, err := fmt.Sscan(ws, &w); err != nil || w < 1 {
			return fmt.Errorf("-workers: %q", ws)
		}
		secs, err := benchProjectorRun(ctx, es, adm, *brokers, topic, name, w, *batch, *nEvents, *nProducts, log)
		if err != nil {
			return err
		}
		r := run{w, secs, float64(*nEvents) / secs}
		runs = append(runs, r)
		fmt.Printf("projector, %d worker(s): %d events in %.2fs = %.0f events/s\n", w, *nEvents, secs, r.rate)
	}

	if *cpuProfile != "" {
		pprof.StopCPUProfile()
	}

	// Raw loaders.
	finalOps := make([]esindex.Op, 0, len(final))
	for _, id := range ids {
		d := final[id]
		b, _ := json.Marshal(d)
		finalOps = append(finalOps, esindex.Op{ID: id, Version: d.Version, Doc: b})
	}
	// The final-document load is short, so one noisy moment on a shared
	// machine skews it most: take the fastest of three (the conservative
	// choice for the ratio).
	rawFinal := 0.0
	for i := range 3 {
		secs, err := benchRawBulk(ctx, es, fmt.Sprintf("%s-raw-final-%d", name, i), finalOps, *batch)
		if err != nil {
			return err
		}
		if rawFinal == 0 || secs < rawFinal {
			rawFinal = secs
		}
	}
	rawFinalRate := float64(*nEvents) / rawFinal
	fmt.Printf("raw _bulk, %d final documents (fastest of 3): %.2fs = %.0f docs/s = %.0f events/s-equivalent\n", len(finalOps), rawFinal, float64(len(finalOps))/rawFinal, rawFinalRate)
	rawAll, err := benchRawBulk(ctx, es, name+"-raw-per-event", perEventDocs, *batch)
	if err != nil {
		return err
	}
	rawAllRate := float64(*nEvents) / rawAll
	fmt.Printf("raw _bulk, one document per event (%d ops): %.2fs = %.0f ops/s\n", len(perEventDocs), rawAll, rawAllRate)

	// Same write pattern as the projector: the event sequence cut into
	// batches of -batch events, each folded to one document per product.
	var folded []esindex.Op
	for i := 0; i < len(perEventDocs); i += *batch {
		chunk := perEventDocs[i:min(i+*batch, len(perEventDocs))]
		last := map[string]int{}
		for j, op := range chunk {
			last[op.ID] = j
		}
		for j, op := range chunk {
			if last[op.ID] == j {
				folded = append(folded, op)
			}
		}
	}
	rawFolded, err := benchRawBulk(ctx, es, name+"-raw-folded", folded, *batch)
	if err != nil {
		return err
	}
	rawFoldedRate := float64(*nEvents) / rawFolded
	fmt.Printf("raw _bulk, per-batch folded documents (%d ops, the projector's write pattern): %.2fs = %.0f events/s-equivalent\n", len(folded), rawFolded, rawFoldedRate)

	best := runs[0]
	for _, r := range runs {
		if r.rate > best.rate {
			best = r
		}
	}
	ratio := best.rate / rawFinalRate
	fmt.Printf("ratio projector (%d workers) / raw final-document load: %.2f (target >= 0.70: %s)\n", best.workers, ratio, passWord(ratio >= 0.7))
	fmt.Printf("ratio projector (%d workers) / raw one-doc-per-event load: %.2f\n", best.workers, best.rate/rawAllRate)
	fmt.Printf("ratio projector (%d workers) / raw per-batch folded load (same write pattern): %.2f\n", best.workers, best.rate/rawFoldedRate)

	res := Result{Part: "projector", Quick: quick, StartedAt: started, Seconds: time.Since(started).Seconds()}
	table := Table{Title: "projector vs raw _bulk", Columns: []string{"run", "seconds", "events/s"}}
	for _, r := range runs {
		row := Row{Name: fmt.Sprintf("projector throughput, %d worker(s)", r.workers), Value: r.rate, Unit: "events/s"}.
			WithBaseline("raw _bulk of the final documents", rawFinalRate)
		if r == best {
			row = row.WithTarget("ratio ≥ 0.7", ratio >= 0.7)
		}
		res.Rows = append(res.Rows, row)
		table.Rows = append(table.Rows, []string{fmt.Sprintf("projector, %d worker(s)", r.workers), fmt.Sprintf("%.2f", r.seconds), fmt.Sprintf("%.0f", r.rate)})
	}
	res.Rows = append(res.Rows, Row{Name: "raw _bulk, one document per event", Value: rawAllRate, Unit: "ops/s"},
		Row{Name: fmt.Sprintf("projector throughput, %d worker(s), vs same write pattern", best.workers), Value: best.rate, Unit: "events/s"}.
			WithBaseline("raw _bulk, per-batch folded documents", rawFoldedRate))
	table.Rows = append(table.Rows,
		[]string{fmt.Sprintf("raw _bulk, %d final docs", len(finalOps)), fmt.Sprintf("%.2f", rawFinal), fmt.Sprintf("%.0f (equivalent)", rawFinalRate)},
		[]string{fmt.Sprintf("raw _bulk, %d per-event docs", len(perEventDocs)), fmt.Sprintf("%.2f", rawAll), fmt.Sprintf("%.0f", rawAllRate)},
		[]string{fmt.Sprintf("raw _bulk, %d per-batch folded docs", len(folded)), fmt.Sprintf("%.2f", rawFolded), fmt.Sprintf("%.0f (equivalent)", rawFoldedRate)})
	res.Tables = []Table{table}
	// Lines of the report's throughput-vs-workers plot (bench/plot.go).
	perWorkers := Series{Name: "throughput_vs_workers/projector", XLabel: "projector workers", YLabel: "events/s"}
	rawLine := Series{Name: "throughput_vs_workers/raw _bulk, final documents", XLabel: "projector workers", YLabel: "events/s"}
	for _, r := range runs {
		perWorkers.Points = append(perWorkers.Points, Point{X: float64(r.workers), Y: r.rate})
		rawLine.Points = append(rawLine.Points, Point{X: float64(r.workers), Y: rawFinalRate})
	}
	res.Series = append(res.Series, perWorkers, rawLine)
	res.Notes = []string{fmt.Sprintf("%d events over %d products, %d partitions, batch %d, %d CPUs shared with Kafka and Elasticsearch; workers run in one process, each its own franz-go client in one group; timed from start (includes the group join) until committed offsets reach the end",
		*nEvents, *nProducts, *partitions, *batch, runtime.NumCPU())}
	if path, err := saveResult(resultsDir(), res); err != nil {
		fmt.Fprintln(os.Stderr, "bench projector: saving result:", err)
	} else {
		fmt.Println("result:", path)
	}
	return nil
}

func pickInt(quick bool, q, full int) int {
	if quick {
		return q
	}
	return full
}

// benchProjectorRun runs w projector workers in a fresh group on a fresh
// index until the group has committed every event, and checks the index.
func benchProjectorRun(ctx context.Context, es *elasticsearch.Client, adm *kadm.Client, brokers, topic, name string, w, batch, nEvents, nProducts int, log *slog.Logger) (float64, error) {
	prefix := fmt.Sprintf("%s-w%d-", name, w)
	group := fmt.Sprintf("%s-w%d", name, w)
	defer func() {
		dctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = esindex.DeleteIndex(dctx, es, esindex.IndexName(prefix, "products", 1))
		_, _ = adm.DeleteGroups(dctx, group)
	}()
	alias, err := projector.EnsureReadModel(ctx, es, prefix, products.Projection)
	if err != nil {
		return 0, err
	}
	m := projector.NewMetrics(obs.NewRegistry())
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	g, gctx := errgroup.WithContext(rctx)
	start := time.Now()
	for range w {
		r, err := projector.New(projector.Config{Brokers: config.SplitList(brokers), Group: group, Topic: topic, Index: alias,
			BatchMaxRecords: batch, FlushInterval: 20 * time.Millisecond, LagInterval: time.Hour, DLQPartitions: 1}, products.Projection, es, m, log)
		if err != nil {
			return 0, err
		}
		g.Go(func() error { return r.Run(gctx) })
	}
	var elapsed float64
	for {
		select {
		case <-gctx.Done():
			cancel()
			return 0, fmt.Errorf("projector workers stopped: %w", g.Wait())
		case <-time.After(100 * time.Millisecond):
		}
		lags, err := projector.Lag(ctx, adm, group, topic)
		if err != nil {
			continue
		}
		var total int64
		for _, l := range lags {
			total += l
		}
		if total == 0 {
			elapsed = time.Since(start).Seconds()
			break
		}
	}
	cancel()
	if err := g.Wait(); err != nil && !errors.Is(err, context.Canceled) {
		return 0, err
	}
	if err := esindex.Refresh(ctx, es, alias); err != nil {
		return 0, err
	}
	n, err := esindex.Count(ctx, es, alias)
	if err != nil {
		return 0, err
	}
	if n != int64(nProducts) {
		return 0, fmt.Errorf("projector run with %d workers indexed %d documents, want %d", w, n, nProducts)
	}
	return elapsed, nil
}

// benchRawBulk indexes ops with _bulk (external versions, like the
// projector) into a fresh index with the products mapping, in requests of
// batch documents, and returns the seconds taken.
func benchRawBulk(ctx context.Context, es *elasticsearch.Client, index string, ops []esindex.Op, batch int) (float64, error) {
	mapping, err := products.Projection.Mapping()
	if err != nil {
		return 0, err
	}
	if err := esindex.EnsureIndex(ctx, es, index, mapping); err != nil {
		return 0, err
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = esindex.DeleteIndex(dctx, es, index)
	}()
	for i := range ops {
		ops[i].Index = index
	}
	start := time.Now()
	for i := 0; i < len(ops); i += batch {
		chunk := ops[i:min(i+batch, len(ops))]
		res, err := esindex.Bulk(ctx, es, chunk, "")
		if err != nil {
			return 0, err
		}
		for _, r := range res {
			if r.Err != "" && !r.Conflict {
				return 0, fmt.Errorf("raw bulk item: %s", strings.TrimSpace(r.Err))
			}
		}
	}
	return time.Since(start).Seconds(), nil
}
