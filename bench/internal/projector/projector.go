// Package projector is the projector part (`bench projector`): prefill a
// private topic with events over a set of products (each product:
// ProductCreated then ProductUpdated…, aggregates interleaved the way
// concurrent writers interleave them), then measure the projector
// runtime's throughput with 1 and 2 workers (a fresh consumer group and a
// fresh index each run, timed from start until the group's committed
// offsets reach the end of the topic), and, in the same run, a raw _bulk
// loader that indexes the same final documents (no Kafka, no _mget, no
// version checks) into a fresh index with the same mapping. The ratio
// compares the time to the same final index: projector events/s vs.
// events/s-equivalent of the raw loader (events / raw time). Two more raw
// baselines index one document per event (the index operations the
// projector would issue without in-batch folding) and the per-batch folded
// documents (the projector's own write pattern).
package projector

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"time"

	"cqrsflow/bench/internal/cli"
	"cqrsflow/bench/internal/result"
	"cqrsflow/internal/config"
	projectorrt "cqrsflow/internal/projector"
	"cqrsflow/internal/testenv"
)

// settings are the part's flags.
type settings struct {
	Brokers          []string
	ElasticsearchURL string
	Events           int
	Products         int
	Partitions       int
	Batch            int
	BatchBytes       int
	Workers          []int
	CPUProfile       string
	Quick            bool
}

func parseSettings(args []string) (settings, error) {
	s := settings{Quick: result.Quick()}
	var brokers, workers string
	fs := flag.NewFlagSet("bench projector", flag.ContinueOnError)
	fs.StringVar(&brokers, "kafka-brokers", cli.Env("KAFKA_BROKERS", config.DefaultKafkaBrokers), "Kafka brokers")
	fs.StringVar(&s.ElasticsearchURL, "elasticsearch-url", cli.Env("ELASTICSEARCH_URL", config.DefaultElasticsearchURL), "Elasticsearch URL")
	fs.IntVar(&s.Events, "events", result.Pick(s.Quick, 20000, 200000), "events to prefill")
	fs.IntVar(&s.Products, "products", result.Pick(s.Quick, 2000, 20000), "products the events are spread over")
	fs.IntVar(&s.Partitions, "partitions", 6, "partitions of the bench topic")
	fs.IntVar(&s.Batch, "batch", 100000, "BATCH_MAX_RECORDS of the projector (default: the projector's default) and docs per raw _bulk request")
	var batchMiB int
	fs.IntVar(&batchMiB, "batch-mib", projectorrt.DefaultBatchMaxBytes>>20, "BATCH_MAX_BYTES of the projector in MiB (a batch closes once its records weigh this much); the per-batch folded baseline cuts its batches the same way")
	fs.StringVar(&workers, "workers", "1,2", "worker counts to measure")
	fs.StringVar(&s.CPUProfile, "cpuprofile", "", "write a CPU profile of the projector runs (not the raw loaders) to this file")
	if err := cli.Parse(fs, args); err != nil {
		return s, err
	}
	if s.Products < 1 || s.Events < s.Products {
		return s, cli.Usagef("need events >= products >= 1")
	}
	if s.Partitions < 1 || s.Batch < 1 {
		return s, cli.Usagef("-partitions and -batch must be > 0")
	}
	if batchMiB < 1 || batchMiB > 1024 {
		return s, cli.Usagef("-batch-mib %d: must be 1..1024", batchMiB)
	}
	s.BatchBytes = batchMiB << 20
	for _, w := range config.SplitList(workers) {
		n, err := strconv.Atoi(w)
		if err != nil || n < 1 {
			return s, cli.Usagef("-workers: %q", w)
		}
		s.Workers = append(s.Workers, n)
	}
	if len(s.Workers) == 0 {
		return s, cli.Usagef("-workers: no worker count")
	}
	s.Brokers = config.SplitList(brokers)
	return s, nil
}

// Run is the projector part.
func Run(ctx context.Context, args []string) error {
	s, err := parseSettings(args)
	if err != nil {
		return err
	}
	started := time.Now()
	b, err := setup(ctx, s, "bench-projector-"+testenv.RandomHex(4), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		return err
	}
	defer b.cleanup()

	data, err := b.prefill(ctx)
	if err != nil {
		return err
	}
	runs, err := b.projectorRuns(ctx)
	if err != nil {
		return err
	}
	raw, err := b.rawLoads(ctx, data)
	if err != nil {
		return err
	}
	m := measurement{Runs: runs, Raw: raw, Events: s.Events}
	m.print()
	path, err := result.Save(m.result(s, started))
	if err != nil {
		return fmt.Errorf("saving result: %w", err)
	}
	fmt.Println("result:", path)
	return nil
}
