// Package relay is the relay part (`bench relay`), in three phases (-phases):
//   - drain: throughput of the outbox relay on a prefilled outbox, against
//     — in the same run — a raw franz-go producer publishing the very same
//     records (key, value, headers, read back from the relay's topics) with
//     the same producer settings;
//   - lag: the publish lag (events.recorded_at → Kafka ack) at a steady
//     open-loop write rate, the writes going through the event store
//     exactly as the API appends;
//   - steady: the CPU the outbox-relay binary and its PostgreSQL backends
//     use per event at steady write rates (steady.go), optionally with the
//     window's busiest statements from pg_stat_statements; then (-floor)
//     the same rates with the floor, bench/internal/rawrelay: the least an
//     outbox relay that loses no row does per batch at the relay's cadence.
//
// Runs in a private schema and private topics, all removed at the end.
package relay

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"cqrsflow/bench/internal/cli"
	"cqrsflow/bench/internal/result"
	"cqrsflow/internal/config"
	"cqrsflow/internal/obs"
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
	Phases       map[string]bool
	SteadyRates  []float64
	SteadyStep   time.Duration
	BinDir       string
	RepoDir      string
	Statements   bool
	DebugAddr    string
	Floor        bool
	Quick        bool
}

// phases are the part's phases, in the order they run.
var phases = []string{"drain", "lag", "steady"}

func parseSettings(args []string) (settings, error) {
	s := settings{Quick: result.Quick()}
	var brokers, phaseList, rates string
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
	fs.StringVar(&phaseList, "phases", strings.Join(phases, ","), "phases to run: drain (with the raw baseline), lag, steady")
	fs.StringVar(&rates, "steady-rates", result.Pick(s.Quick, "1000", "1000,2000"), "write rates of the steady phase (events/s)")
	fs.DurationVar(&s.SteadyStep, "steady-step", result.Pick(s.Quick, 5*time.Second, 15*time.Second), "duration of each steady rate")
	fs.StringVar(&s.BinDir, "bin-dir", "", "steady phase: run outbox-relay from this dir instead of building it")
	fs.StringVar(&s.RepoDir, "repo", ".", "steady phase: directory inside the repository to build outbox-relay from")
	fs.BoolVar(&s.Statements, "statements", false, "steady phase: list each rate's busiest statements (needs pg_stat_statements)")
	fs.BoolVar(&s.Floor, "floor", true, "steady phase: measure the same rates with the floor (bench/internal/rawrelay) after the relay")
	fs.StringVar(&s.DebugAddr, "debug-addr", "", "steady phase: the relay binary's DEBUG_ADDR (a loopback host:port) to profile it while it runs; the floor then serves its profile too (its address is printed)")
	if err := cli.Parse(fs, args); err != nil {
		return s, err
	}
	if s.Rows < 1 || s.BatchSize < 1 || s.Rate <= 0 || s.Partitions < 1 || s.SteadyStep < time.Second {
		return s, cli.Usagef("-rows, -batch-size, -rate and -partitions must be > 0, -steady-step at least 1s")
	}
	s.Brokers = config.SplitList(brokers)
	var err error
	if s.Phases, err = parsePhases(phaseList); err != nil {
		return s, cli.Usagef("-phases: %v", err)
	}
	for _, f := range config.SplitList(rates) {
		r, err := strconv.ParseFloat(f, 64)
		if err != nil || r <= 0 || math.IsInf(r, 0) {
			return s, cli.Usagef("-steady-rates: %q is not a positive number", f)
		}
		s.SteadyRates = append(s.SteadyRates, r)
	}
	if s.Phases["steady"] && len(s.SteadyRates) == 0 {
		return s, cli.Usagef("-steady-rates: no rate given")
	}
	if err := obs.ValidateDebugAddr("-debug-addr", s.DebugAddr); err != nil {
		return s, cli.Usagef("%v", err)
	}
	return s, nil
}

// parsePhases reads -phases: known names, at least one.
func parsePhases(list string) (map[string]bool, error) {
	out := map[string]bool{}
	for _, p := range config.SplitList(list) {
		if !slices.Contains(phases, p) {
			return nil, fmt.Errorf("unknown phase %q (phases: %s)", p, strings.Join(phases, ", "))
		}
		out[p] = true
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no phase given")
	}
	return out, nil
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

	var out outcome
	if s.Phases["drain"] {
		d, err := b.drain(ctx)
		if err != nil {
			return err
		}
		if d.Raw, d.RawRuns, err = b.rawBaseline(ctx, d.Records); err != nil {
			return err
		}
		d.print()
		out.drain = &d
	}
	if s.Phases["lag"] {
		l, err := b.lag(ctx)
		if err != nil {
			return err
		}
		l.print()
		out.lag = &l
	}
	if s.Phases["steady"] {
		if out.steady, out.floor, err = b.steady(ctx); err != nil {
			return err
		}
	}
	path, err := result.Save(resultOf(s, started, out))
	if err != nil {
		return fmt.Errorf("saving result: %w", err)
	}
	fmt.Printf("  result: %s\n", path)
	return nil
}
