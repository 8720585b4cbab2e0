// Package relay is the relay part (`bench relay`): drain throughput of the
// outbox relay on a prefilled outbox, against — in the same run — a raw
// franz-go producer publishing the very same records (key, value, headers,
// read back from the relay's topics) with the same producer settings; then
// the publish lag (events.recorded_at → Kafka ack) at a steady open-loop
// write rate, the writes going through the event store exactly as the API
// appends. Runs in a private schema and private topics, all removed at the
// end.
package relay

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"time"

	"cqrsflow/bench/internal/cli"
	"cqrsflow/bench/internal/result"
	"cqrsflow/internal/config"
)

// aggTypes are the aggregate types the rows are spread over (one topic each).
var aggTypes = []string{"product", "order"}

// settings are the part's flags.
type settings struct {
	PostgresURL  string
	Brokers      []string
	Rows         int
	PayloadBytes int
	BatchSize    int
	Workers      int
	Partitions   int
	Rate         float64
	CPUProfile   string
	LagDuration  time.Duration
	Quick        bool
}

func parseSettings(args []string) (settings, error) {
	s := settings{Quick: result.Quick()}
	var brokers string
	fs := flag.NewFlagSet("bench relay", flag.ContinueOnError)
	fs.StringVar(&s.PostgresURL, "postgres-url", cli.Env("POSTGRES_URL", config.DefaultPostgresURL), "PostgreSQL URL (a private schema is created and dropped)")
	fs.StringVar(&brokers, "kafka-brokers", cli.Env("KAFKA_BROKERS", config.DefaultKafkaBrokers), "Kafka brokers (private topics are created and deleted)")
	fs.IntVar(&s.Rows, "rows", result.Pick(s.Quick, 20000, 200000), "outbox rows to prefill and drain")
	fs.IntVar(&s.PayloadBytes, "payload-bytes", 300, "approximate payload size")
	fs.IntVar(&s.BatchSize, "batch-size", 1000, "relay BATCH_SIZE")
	fs.IntVar(&s.Workers, "workers", 4, "relay PUBLISH_WORKERS")
	fs.IntVar(&s.Partitions, "partitions", 12, "partitions per topic")
	fs.Float64Var(&s.Rate, "rate", 1000, "steady write rate of the lag phase (events/s)")
	fs.StringVar(&s.CPUProfile, "cpuprofile", "", "write a CPU profile of the drain phase to this file")
	fs.DurationVar(&s.LagDuration, "lag-duration", result.Pick(s.Quick, 5*time.Second, 20*time.Second), "duration of the lag phase")
	if err := cli.Parse(fs, args); err != nil {
		return s, err
	}
	if s.Rows < 1 || s.BatchSize < 1 || s.Rate <= 0 || s.Partitions < 1 {
		return s, cli.Usagef("-rows, -batch-size, -rate and -partitions must be > 0")
	}
	s.Brokers = config.SplitList(brokers)
	return s, nil
}

// Run is the relay part.
func Run(ctx context.Context, args []string) error {
	s, err := parseSettings(args)
	if err != nil {
		return err
	}
	started := time.Now()
	level := slog.LevelWarn
	if os.Getenv("BENCH_RELAY_DEBUG") != "" {
		level = slog.LevelDebug
	}
	b, err := setup(ctx, s, slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level})))
	if err != nil {
		return err
	}
	defer b.cleanup()

	d, err := b.drain(ctx)
	if err != nil {
		return err
	}
	if d.Raw, d.RawRuns, err = b.rawBaseline(ctx, d.Records); err != nil {
		return err
	}
	d.print()
	l, err := b.lag(ctx)
	if err != nil {
		return err
	}
	l.print()
	path, err := result.Save(resultOf(s, started, d, l))
	if err != nil {
		return fmt.Errorf("saving result: %w", err)
	}
	fmt.Printf("  result: %s\n", path)
	return nil
}
