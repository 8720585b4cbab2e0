package pipeline

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"cqrsflow/bench/internal/cli"
	"cqrsflow/bench/internal/result"
	"cqrsflow/internal/config"
)

type pipelineConfig struct {
	PostgresURL      string
	KafkaBrokers     string
	ElasticsearchURL string
	StateDir         string
	BinDir           string
	RepoDir          string

	Rates         []float64
	StepDuration  time.Duration
	Warmup        time.Duration
	Probes        int
	Bisect        int
	Projectors    int
	SLO           time.Duration
	SamplesPerSec float64
	PollInterval  time.Duration
	MaxInFlight   int
	DrainTimeout  time.Duration
	SettleTimeout time.Duration
	ReadyTimeout  time.Duration
	ExtraEnv      []string
	Quick         bool
	KeepLogs      bool
}

// envList is a repeatable KEY=VALUE flag.
type envList []string

func (e *envList) String() string { return strings.Join(*e, ",") }
func (e *envList) Set(s string) error {
	k, _, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("%q is not KEY=VALUE", s)
	}
	*e = append(*e, s)
	return nil
}

func parseRates(s string) ([]float64, error) {
	var out []float64
	for _, f := range config.SplitList(s) {
		r, err := strconv.ParseFloat(f, 64)
		if err != nil || r <= 0 || math.IsInf(r, 0) {
			return nil, fmt.Errorf("rate %q is not a positive number", f)
		}
		out = append(out, r)
	}
	if len(out) == 0 {
		return nil, errors.New("no rates given")
	}
	sort.Float64s(out)
	return slices.Compact(out), nil
}

// parsePipelineConfig reads the flags and reports every bad value at once.
func parsePipelineConfig(args []string) (pipelineConfig, error) {
	cfg := pipelineConfig{Quick: result.Quick()}
	var (
		rates string
		extra envList
	)
	set := config.NewSet("pipeline")
	fs := set.FlagSet()
	defRates, defStep, defProbes, defBisect, defDrain := "250,500,1000,2000", 15*time.Second, 2, 2, 20*time.Second
	if cfg.Quick {
		defRates, defStep, defProbes, defBisect, defDrain = "250,1000", 8*time.Second, 0, 0, 10*time.Second
	}
	set.URL(&cfg.PostgresURL, "POSTGRES_URL", config.DefaultPostgresURL, "PostgreSQL base URL (a fresh schema is created in it)")
	set.String(&cfg.KafkaBrokers, "KAFKA_BROKERS", config.DefaultKafkaBrokers, "Kafka brokers")
	set.URL(&cfg.ElasticsearchURL, "ELASTICSEARCH_URL", config.DefaultElasticsearchURL, "Elasticsearch URL")
	cfg.StateDir = config.StateDir() // pid files, for CPU accounting
	fs.StringVar(&cfg.BinDir, "bin-dir", "", "use api, outbox-relay and projector from this dir instead of building them")
	fs.StringVar(&cfg.RepoDir, "repo", ".", "directory inside the repository to build the binaries from")
	fs.StringVar(&rates, "rates", defRates, "comma-separated steady offered rates (writes/s)")
	fs.DurationVar(&cfg.StepDuration, "step", defStep, "duration of each steady rate")
	fs.DurationVar(&cfg.Warmup, "warmup", 3*time.Second, "unmeasured warm-up at 100 writes/s")
	fs.IntVar(&cfg.Probes, "probes", defProbes, "extra rates above the list (×1.5 each) while every rate passes")
	fs.IntVar(&cfg.Bisect, "bisect", defBisect, "bisection steps between the highest passing and the lowest failing rate")
	fs.IntVar(&cfg.Projectors, "projectors", 1, "projector processes")
	fs.DurationVar(&cfg.SLO, "slo", 2*time.Second, "p99 end-to-end latency a rate must stay under")
	fs.Float64Var(&cfg.SamplesPerSec, "samples", 200, "sampled writes per second followed until searchable")
	fs.DurationVar(&cfg.PollInterval, "poll", 50*time.Millisecond, "search poll interval (the resolution of searchable times)")
	fs.IntVar(&cfg.MaxInFlight, "max-inflight", 256, "concurrent HTTP requests at most")
	fs.DurationVar(&cfg.DrainTimeout, "drain", defDrain, "how long to wait after a rate for its samples to become searchable")
	fs.DurationVar(&cfg.SettleTimeout, "settle", 60*time.Second, "how long the pipeline may take to drain before the next rate")
	fs.DurationVar(&cfg.ReadyTimeout, "ready-timeout", 90*time.Second, "how long each binary may take to become ready")
	fs.Var(&extra, "env", "KEY=VALUE added to every binary's environment (repeatable)")
	fs.BoolVar(&cfg.KeepLogs, "keep-logs", false, "keep the binaries' logs (printed path) after the run")
	if err := cli.Parse(fs, args); err != nil {
		return cfg, err
	}
	if err := set.Err(); err != nil {
		return cfg, cli.UsageError{Err: err}
	}
	r, err := parseRates(rates)
	cfg.Rates, cfg.ExtraEnv = r, extra
	if err != nil {
		err = fmt.Errorf("-rates: %w", err)
	}
	if err := errors.Join(err, cfg.validate()); err != nil {
		return cfg, cli.UsageError{Err: err}
	}
	return cfg, nil
}

func (cfg pipelineConfig) validate() error {
	var errs []error
	if cfg.StepDuration < time.Second {
		errs = append(errs, errors.New("-step: must be at least 1s"))
	}
	if cfg.Projectors < 1 || cfg.Projectors > 8 {
		errs = append(errs, errors.New("-projectors: must be 1..8"))
	}
	if cfg.Probes < 0 || cfg.Probes > 6 || cfg.Bisect < 0 || cfg.Bisect > 6 {
		errs = append(errs, errors.New("-probes and -bisect: must be 0..6 (the run stays bounded)"))
	}
	if cfg.SamplesPerSec <= 0 {
		errs = append(errs, errors.New("-samples: must be > 0"))
	}
	if cfg.PollInterval < 5*time.Millisecond {
		errs = append(errs, errors.New("-poll: must be at least 5ms"))
	}
	if cfg.MaxInFlight < 1 {
		errs = append(errs, errors.New("-max-inflight: must be ≥ 1"))
	}
	if cfg.SLO <= 0 || cfg.DrainTimeout <= 0 || cfg.SettleTimeout <= 0 || cfg.ReadyTimeout <= 0 {
		errs = append(errs, errors.New("-slo, -drain, -settle and -ready-timeout: must be > 0"))
	}
	return errors.Join(errs...)
}
