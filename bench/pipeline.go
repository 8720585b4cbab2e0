package main

// `bench pipeline`: the whole pipeline, end to end, through the real
// binaries. It builds api, outbox-relay and projector, starts them against
// the local stack with a fresh PostgreSQL schema, topic prefix and index
// prefix, and drives product creates through the API with an open-loop
// generator at several steady rates. For a sample of the writes it measures
// commit (the API's 201) → searchable (the document at that version is
// returned by a _search on the read alias). It finds the highest rate whose
// p99 stays under the SLO, records each process's CPU and peak RSS, and
// cleans up everything it created, also on failure.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"cqrsflow/internal/config"
	"cqrsflow/internal/loadgen"
	"cqrsflow/internal/migrations"
)

func init() { parts["pipeline"] = runPipeline }

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
	ResultsDir    string
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

func parsePipelineConfig(args []string) (pipelineConfig, error) {
	fs := flag.NewFlagSet("pipeline", flag.ContinueOnError)
	var (
		cfg   pipelineConfig
		errs  []error
		rates string
		extra envList
	)
	cfg.Quick = quickMode()
	defRates, defStep, defProbes, defBisect, defDrain := "250,500,1000,2000", 15*time.Second, 2, 2, 20*time.Second
	if cfg.Quick {
		defRates, defStep, defProbes, defBisect, defDrain = "250,1000", 8*time.Second, 0, 0, 10*time.Second
	}
	config.String(fs, &cfg.PostgresURL, "POSTGRES_URL", config.DefaultPostgresURL, "PostgreSQL base URL (a fresh schema is created in it)")
	config.String(fs, &cfg.KafkaBrokers, "KAFKA_BROKERS", config.DefaultKafkaBrokers, "Kafka brokers")
	config.String(fs, &cfg.ElasticsearchURL, "ELASTICSEARCH_URL", config.DefaultElasticsearchURL, "Elasticsearch URL")
	config.String(fs, &cfg.StateDir, "CQRSFLOW_STATE_DIR", "/var/tmp/cqrsflow-local", "local stack state dir (pid files, for CPU accounting)")
	fs.StringVar(&cfg.BinDir, "bin-dir", "", "use api, outbox-relay and projector from this dir instead of building them")
	fs.StringVar(&cfg.RepoDir, "repo", ".", "repository root to build the binaries from")
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
	fs.StringVar(&cfg.ResultsDir, "out", resultsDir(), "results directory (env "+resultsDirEnv+")")
	fs.BoolVar(&cfg.KeepLogs, "keep-logs", false, "keep the binaries' logs (printed path) after the run")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		errs = append(errs, fmt.Errorf("unexpected arguments %v", fs.Args()))
	}
	r, err := parseRates(rates)
	if err != nil {
		errs = append(errs, fmt.Errorf("-rates: %w", err))
	}
	cfg.Rates, cfg.ExtraEnv = r, extra
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
	return cfg, errors.Join(errs...)
}

// pipeline is one run: the names it created and the processes it started.
type pipeline struct {
	cfg         pipelineConfig
	runID       string
	schema      string
	topicPrefix string
	indexPrefix string
	alias       string
	pgURL       string // with search_path
	apiKey      string
	workDir     string
	procs       []*proc
	api         *proc
	stages      []stageMetric
	notes       []string // what the rate plan skipped or why it stopped
	settles     int
	pgAdmin     *pgx.Conn // for pg_stat_activity (CPU of backends by client)
	client      *http.Client
	poller      *visPoller
}

func runPipeline(ctx context.Context, args []string) (err error) {
	cfg, err := parsePipelineConfig(args)
	if err != nil {
		return err
	}
	started := time.Now()
	pl, err := newPipeline(cfg)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, pl.cleanup()) }()
	fmt.Printf("pipeline: run %s (schema %s, topic prefix %s, index prefix %s), work dir %s\n",
		pl.runID, pl.schema, pl.topicPrefix, pl.indexPrefix, pl.workDir)
	if err := pl.setup(ctx); err != nil {
		return err
	}
	pctx, stopPoll := context.WithCancel(ctx)
	defer stopPoll()
	go pl.poller.run(pctx)

	groups := pl.cpuGroups()
	if cfg.Warmup > 0 {
		fmt.Printf("pipeline: warm-up %s at 100 writes/s\n", cfg.Warmup)
		_ = pl.runStep(ctx, 100, cfg.Warmup, groups)
	}
	steps, maxOK, err := pl.runRates(ctx, groups)
	if err != nil {
		return err
	}
	mem := pl.memory()
	res := pipelineResult(cfg, started, steps, maxOK, mem, pl)
	path, err := saveResult(cfg.ResultsDir, res)
	if err != nil {
		return err
	}
	fmt.Printf("pipeline: wrote %s\n", path)
	return noWriteSucceeded(steps)
}

// noWriteSucceeded fails the part when not one write of any rate got its
// 201: the numbers would describe a broken setup, not the pipeline.
func noWriteSucceeded(steps []stepResult) error {
	kinds := map[string]int{}
	for _, st := range steps {
		if st.OK > 0 {
			return nil
		}
		for k, n := range st.ErrKinds {
			kinds[k] += n
		}
	}
	var parts []string
	for k, n := range kinds {
		parts = append(parts, fmt.Sprintf("%s×%d", k, n))
	}
	sort.Strings(parts)
	return fmt.Errorf("no write succeeded at any rate (%s); see the api log", strings.Join(parts, ", "))
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func newPipeline(cfg pipelineConfig) (*pipeline, error) {
	id := randomHex(4)
	dir, err := os.MkdirTemp("", "cqrsflow-bench-"+id+"-")
	if err != nil {
		return nil, fmt.Errorf("creating work dir: %w", err)
	}
	pl := &pipeline{
		cfg:         cfg,
		runID:       id,
		schema:      "bench_" + id,
		topicPrefix: "bench-" + id,
		indexPrefix: "bench-" + id + "-",
		apiKey:      "bench-" + randomHex(16),
		workDir:     dir,
	}
	pl.alias = pl.indexPrefix + "products"
	tr := &http.Transport{MaxIdleConns: cfg.MaxInFlight, MaxIdleConnsPerHost: cfg.MaxInFlight, IdleConnTimeout: 90 * time.Second}
	pl.client = &http.Client{Transport: tr, Timeout: 10 * time.Second}
	pl.poller = newVisPoller(cfg.ElasticsearchURL, pl.alias, cfg.PollInterval)
	return pl, nil
}

// setup builds the binaries, creates and migrates the schema and starts
// relay, projectors and api, each waited for on /readyz.
func (pl *pipeline) setup(ctx context.Context) error {
	bin := pl.cfg.BinDir
	if bin == "" {
		bin = filepath.Join(pl.workDir, "bin")
		fmt.Println("pipeline: building api, outbox-relay, projector")
		cmd := exec.CommandContext(ctx, "go", "build", "-o", bin+string(filepath.Separator), "./api", "./outbox-relay", "./projector")
		cmd.Dir = pl.cfg.RepoDir
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("building the binaries (run from the repository root): %w\n%s", err, out)
		}
	}
	if err := pl.createSchema(ctx); err != nil {
		return err
	}
	common := []string{
		"POSTGRES_URL=" + pl.pgURL,
		"KAFKA_BROKERS=" + pl.cfg.KafkaBrokers,
		"ELASTICSEARCH_URL=" + pl.cfg.ElasticsearchURL,
		"TOPIC_PREFIX=" + pl.topicPrefix,
		"INDEX_PREFIX=" + pl.indexPrefix,
		"GROUP_PREFIX=" + pl.topicPrefix + "-projector",
	}
	start := func(name, binName, addrEnv string, extra ...string) (*proc, error) {
		addr, err := freeAddr()
		if err != nil {
			return nil, err
		}
		// application_name tells the PostgreSQL backends of each process apart.
		pgURL, err := withParam(pl.pgURL, "application_name", pl.appName(name))
		if err != nil {
			return nil, err
		}
		env := append(slices.Clone(common), addrEnv+"="+addr, "POSTGRES_URL="+pgURL)
		env = append(env, extra...)
		env = append(env, pl.cfg.ExtraEnv...)
		p, err := startProc(name, filepath.Join(bin, binName), nil, env, addr, filepath.Join(pl.workDir, name+".log"))
		if err != nil {
			return nil, err
		}
		pl.procs = append(pl.procs, p)
		if err := p.waitReady(ctx, pl.cfg.ReadyTimeout); err != nil {
			return nil, err
		}
		fmt.Printf("pipeline: %s ready on %s (pid %d)\n", name, addr, p.Pid())
		return p, nil
	}
	// The relay creates the topics, the projectors the indices and alias.
	relay, err := start("outbox-relay", "outbox-relay", "METRICS_ADDR")
	if err != nil {
		return err
	}
	var projectors []*proc
	for i := 1; i <= pl.cfg.Projectors; i++ {
		p, err := start(fmt.Sprintf("projector-%d", i), "projector", "METRICS_ADDR")
		if err != nil {
			return err
		}
		projectors = append(projectors, p)
	}
	pl.stages = []stageMetric{
		{Label: "relay commit→Kafka ack", Metric: "cqrsflow_relay_publish_lag_seconds", Procs: []*proc{relay}},
		{Label: "projector commit→indexed", Metric: "cqrsflow_projector_end_to_end_seconds",
			LabelName: "projection", LabelValue: "products", Procs: projectors},
	}
	// The per-key rate limiter is off: the part measures the pipeline's
	// capacity, not the limiter's setting.
	api, err := start("api", "api", "HTTP_ADDR", "API_KEYS="+pl.apiKey, "RATE_LIMIT_RPS=0")
	if err != nil {
		return err
	}
	pl.api = api
	return nil
}

func (pl *pipeline) createSchema(ctx context.Context) error {
	conn, err := pgx.Connect(ctx, pl.cfg.PostgresURL)
	if err != nil {
		return fmt.Errorf("connecting to PostgreSQL at %s (run `make up`): %w", config.MaskURL(pl.cfg.PostgresURL), err)
	}
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+pgx.Identifier{pl.schema}.Sanitize()); err != nil {
		conn.Close(context.Background())
		return fmt.Errorf("creating schema %s: %w", pl.schema, err)
	}
	pl.pgAdmin = conn // closed by cleanup
	u, err := withSearchPath(pl.cfg.PostgresURL, pl.schema)
	if err != nil {
		return err
	}
	pl.pgURL = u
	if err := migrations.Up(ctx, u); err != nil {
		return fmt.Errorf("migrating schema %s: %w", pl.schema, err)
	}
	return nil
}

// cpuGroups are the processes whose CPU the steps account.
func (pl *pipeline) cpuGroups() []cpuGroup {
	var g []cpuGroup
	for _, p := range pl.procs {
		g = append(g, cpuGroup{Name: p.Name, Pid: p.Pid()})
	}
	g = append(g, stackGroups(pl.cfg.StateDir)...)
	return append(g, cpuGroup{Name: "bench (load generator)", Pid: os.Getpid()})
}

// stepResult is one steady rate.
type stepResult struct {
	Offered   float64
	Duration  time.Duration
	Planned   int
	OK        int
	Errors    int
	Unsent    int
	ErrKinds  map[string]int
	Achieved  float64 // successful writes per second over the load window
	API       summary // intended send → 201 (includes waiting for a free sender)
	E2E       summary // 201 → searchable
	Full      summary // intended send → searchable
	Samples   int
	Missing   int // sampled writes not searchable within the drain timeout
	Cores     map[string]float64
	Stages    []stageStat // the binaries' own histograms over this rate
	Pass      bool
	Why       string
	DrainTime time.Duration
}

// runStep drives creates at rate for dur, then waits for the sampled
// writes to become searchable.
func (pl *pipeline) runStep(ctx context.Context, rate float64, dur time.Duration, groups []cpuGroup) stepResult {
	st := stepResult{Offered: rate, Duration: dur, ErrKinds: map[string]int{}}
	planned := int(rate * dur.Seconds())
	every := max(1, int(math.Ceil(rate/pl.cfg.SamplesPerSec)))
	var (
		mu      sync.Mutex
		samples []*visSample
		lastEnd time.Time
	)
	before := pl.scrapeStages(ctx)
	cpu0 := sampleCPU(groups, pl.pgBackends(ctx))
	start := time.Now()
	lr, unsent := loadgen.OpenLoopScheduled(ctx, rate, dur, pl.cfg.MaxInFlight, 5*time.Second, func(ctx context.Context, i int, intended time.Time) error {
		id, version, kind := pl.create(ctx, i)
		done := time.Now()
		mu.Lock()
		defer mu.Unlock()
		if done.After(lastEnd) {
			lastEnd = done
		}
		if kind != "" {
			st.ErrKinds[kind]++
			return errors.New(kind)
		}
		st.OK++
		if i%every == 0 || i == planned-1 {
			s := &visSample{ID: id, Version: version, Intended: intended, Committed: done}
			samples = append(samples, s)
			pl.poller.add(s)
		}
		return nil
	})
	cpu1 := sampleCPU(groups, pl.pgBackends(ctx))
	st.Planned, st.Unsent = planned, unsent
	st.Errors = lr.Errors - unsent
	window := max(dur, lastEnd.Sub(start))
	st.Achieved = float64(st.OK) / window.Seconds()
	st.Cores = coresUsed(cpu0, cpu1)

	// Wait for the samples; what is still missing after the drain timeout
	// counts against the rate.
	drainStart := time.Now()
	deadline := drainStart.Add(pl.cfg.DrainTimeout)
	for time.Now().Before(deadline) && ctx.Err() == nil && !pl.allVisible(&mu, samples) {
		time.Sleep(pl.cfg.PollInterval)
	}
	st.DrainTime = time.Since(drainStart)
	after := pl.scrapeStages(ctx)
	for i, m := range pl.stages {
		if before[i].err != nil || after[i].err != nil {
			st.Stages = append(st.Stages, stageStat{Label: m.Label, Err: errors.Join(before[i].err, after[i].err)})
			continue
		}
		st.Stages = append(st.Stages, stageFrom(m.Label, after[i].h.sub(before[i].h)))
	}
	var e2e, full latencies
	mu.Lock()
	pl.forget(samples) // the ones still pending are missing
	for _, s := range samples {
		pl.poller.mu.Lock()
		vis := s.Visible
		pl.poller.mu.Unlock()
		if vis.IsZero() {
			st.Missing++
			continue
		}
		e2e = append(e2e, vis.Sub(s.Committed))
		full = append(full, vis.Sub(s.Intended))
	}
	st.Samples = len(samples)
	mu.Unlock()
	// API latency: intended send → 201, from the load generator.
	st.API = summary{N: lr.Ops, P50: lr.P50, P99: lr.P99, P999: lr.P999, Max: lr.Max}
	st.E2E, st.Full = e2e.summarize(), full.summarize()
	st.Pass, st.Why = judge(st, pl.cfg.SLO)
	return st
}

type scraped struct {
	h   histo
	err error
}

// scrapeStages reads every stage histogram now.
func (pl *pipeline) scrapeStages(ctx context.Context) []scraped {
	out := make([]scraped, len(pl.stages))
	for i, m := range pl.stages {
		out[i].h, out[i].err = m.scrape(ctx, http.DefaultClient)
	}
	return out
}

// allVisible reports whether every sample was seen (Visible is written
// under the poller's lock).
func (pl *pipeline) allVisible(mu *sync.Mutex, samples []*visSample) bool {
	mu.Lock()
	defer mu.Unlock()
	pl.poller.mu.Lock()
	defer pl.poller.mu.Unlock()
	for _, s := range samples {
		if s.Visible.IsZero() {
			return false
		}
	}
	return true
}

// judge decides whether a rate was sustained: at most 1% of the planned
// writes failed or were not sent, every sampled write became searchable,
// and the p99 from the intended send time to searchable — which contains
// the commit → searchable latency and any queueing in front of the API —
// stayed under the SLO.
func judge(st stepResult, slo time.Duration) (bool, string) {
	var why []string
	if bad := st.Errors + st.Unsent; st.Planned == 0 || float64(bad) > 0.01*float64(st.Planned) {
		why = append(why, fmt.Sprintf("%d of %d writes failed or unsent", bad, st.Planned))
	}
	if st.Missing > 0 {
		why = append(why, fmt.Sprintf("%d of %d samples not searchable in time", st.Missing, st.Samples))
	}
	if st.Samples == 0 {
		why = append(why, "no sampled write")
	}
	if st.Full.N > 0 && st.Full.P99 >= slo {
		why = append(why, fmt.Sprintf("p99 send→searchable %s ≥ %s", st.Full.P99.Round(time.Millisecond), slo))
	}
	if len(why) == 0 {
		return true, "sustained"
	}
	return false, strings.Join(why, "; ")
}

// ratePlan decides which rate runs next: the fixed rates in ascending
// order (skipping those above a rate the pipeline could not even carry),
// then probes ×1.5 while nothing above the highest passing rate failed,
// then bisection between the highest passing rate and the lowest failing
// rate above it. Every count is bounded, so the run is.
type ratePlan struct {
	fixed          []float64
	probes, bisect int

	next       int
	probed     int
	bisected   int
	ran        map[float64]bool
	passed     []float64
	failed     []float64
	overloadAt float64 // lowest rate that was overloaded; 0 = none
}

func newRatePlan(fixed []float64, probes, bisect int) *ratePlan {
	return &ratePlan{fixed: fixed, probes: probes, bisect: bisect, ran: map[float64]bool{}}
}

// record notes the outcome of a rate.
func (p *ratePlan) record(rate float64, pass, overloaded bool) {
	p.ran[rate] = true
	if pass {
		p.passed = append(p.passed, rate)
	} else {
		p.failed = append(p.failed, rate)
	}
	if overloaded && (p.overloadAt == 0 || rate < p.overloadAt) {
		p.overloadAt = rate
	}
}

// best is the highest passing rate (0 if none).
func (p *ratePlan) best() float64 {
	var b float64
	for _, r := range p.passed {
		b = math.Max(b, r)
	}
	return b
}

// failAbove is the lowest failing rate above r (+Inf if none).
func (p *ratePlan) failAbove(r float64) float64 {
	f := math.Inf(1)
	for _, x := range p.failed {
		if x > r {
			f = math.Min(f, x)
		}
	}
	return f
}

// nextRate returns the next rate to run, and a note for every fixed rate
// it skipped; ok is false when the plan is done.
func (p *ratePlan) nextRate() (rate float64, skipped []string, ok bool) {
	for p.next < len(p.fixed) {
		r := p.fixed[p.next]
		p.next++
		if p.overloadAt > 0 && r > p.overloadAt {
			skipped = append(skipped, fmt.Sprintf("skipped %.0f writes/s: %.0f writes/s already could not be carried", r, p.overloadAt))
			continue
		}
		return r, skipped, true
	}
	best := p.best()
	hi := p.failAbove(best)
	if math.IsInf(hi, 1) && p.probed < p.probes && best > 0 {
		top := best
		for r := range p.ran {
			top = math.Max(top, r)
		}
		if top == best { // nothing ran above the best: go higher
			p.probed++
			return math.Round(best*1.5/50) * 50, skipped, true
		}
	}
	if !math.IsInf(hi, 1) && p.bisected < p.bisect {
		mid := math.Round((best+hi)/2/50) * 50
		if mid > best && mid < hi && mid >= 50 && !p.ran[mid] {
			p.bisected++
			return mid, skipped, true
		}
	}
	return 0, skipped, false
}

// overloaded reports whether a rate could not even be carried: under 90%
// of the offered writes succeeded within the load window (plus grace).
func (st stepResult) overloaded() bool {
	return st.Planned > 0 && (st.Achieved < 0.9*st.Offered || float64(st.Unsent+st.Errors) > 0.1*float64(st.Planned))
}

// runRates runs the rate plan, letting the pipeline settle before each
// rate. It returns the steps in the order run and the highest sustained
// rate (0 if none).
func (pl *pipeline) runRates(ctx context.Context, groups []cpuGroup) ([]stepResult, float64, error) {
	plan := newRatePlan(pl.cfg.Rates, pl.cfg.Probes, pl.cfg.Bisect)
	var steps []stepResult
	for {
		rate, skipped, ok := plan.nextRate()
		for _, s := range skipped {
			fmt.Println("pipeline: " + s)
			pl.notes = append(pl.notes, s)
		}
		if !ok {
			break
		}
		if ctx.Err() != nil {
			return steps, plan.best(), ctx.Err()
		}
		if d, err := pl.settle(ctx); err != nil {
			note := fmt.Sprintf("stopped before %.0f writes/s: %v", rate, err)
			fmt.Println("pipeline: " + note)
			pl.notes = append(pl.notes, note)
			break
		} else if d > 2*time.Second {
			fmt.Printf("pipeline: settled in %s\n", d.Round(100*time.Millisecond))
		}
		fmt.Printf("pipeline: %.0f writes/s for %s …\n", rate, pl.cfg.StepDuration)
		st := pl.runStep(ctx, rate, pl.cfg.StepDuration, groups)
		steps = append(steps, st)
		fmt.Printf("pipeline: %.0f writes/s: achieved %.0f/s, api p99 %s, e2e p50 %s p99 %s max %s, %s\n",
			rate, st.Achieved, st.API.P99.Round(time.Millisecond), st.E2E.P50.Round(time.Millisecond),
			st.E2E.P99.Round(time.Millisecond), st.E2E.Max.Round(time.Millisecond), st.Why)
		plan.record(rate, st.Pass, st.overloaded())
	}
	return steps, plan.best(), nil
}

// settle waits until the pipeline has worked off earlier load: a few
// fresh writes (on different keys, so on different partitions) must become
// searchable, which means everything queued before them on their
// partitions was projected. Bounded by SettleTimeout.
func (pl *pipeline) settle(ctx context.Context) (time.Duration, error) {
	start := time.Now()
	var (
		mu      sync.Mutex
		samples []*visSample
	)
	for i := range 4 {
		pl.settles++
		id, version, kind := pl.create(ctx, 1_000_000_000+4*pl.settles+i)
		if kind != "" {
			return 0, fmt.Errorf("settle write failed: %s", kind)
		}
		s := &visSample{ID: id, Version: version, Committed: time.Now()}
		samples = append(samples, s)
		pl.poller.add(s)
	}
	deadline := start.Add(pl.cfg.SettleTimeout)
	for !pl.allVisible(&mu, samples) {
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		if time.Now().After(deadline) {
			pl.forget(samples)
			return 0, fmt.Errorf("the pipeline did not drain within %s", pl.cfg.SettleTimeout)
		}
		time.Sleep(pl.cfg.PollInterval)
	}
	return time.Since(start), nil
}

// forget stops following samples that never became searchable.
func (pl *pipeline) forget(samples []*visSample) {
	pl.poller.mu.Lock()
	defer pl.poller.mu.Unlock()
	for _, s := range samples {
		delete(pl.poller.pending, s.ID)
	}
}

type createBody struct {
	Name        string  `json:"name"`
	Description string  `json:"description"`
	Price       float64 `json:"price"`
	Stock       int     `json:"stock"`
}

// create sends one POST /v1/products; kind is "" on a 201, else a short
// error class for the report ("http 429", "timeout", …).
func (pl *pipeline) create(ctx context.Context, i int) (id string, version int64, kind string) {
	body, _ := json.Marshal(createBody{
		Name:        fmt.Sprintf("bench lamp %d", i),
		Description: fmt.Sprintf("benchmark product %d of run %s, a small desk lamp with a warm light", i, pl.runID),
		Price:       float64(100+i%9000) / 100,
		Stock:       i % 500,
	})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+pl.api.Addr+"/v1/products", bytes.NewReader(body))
	if err != nil {
		return "", 0, "request"
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+pl.apiKey)
	res, err := pl.client.Do(req)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) || os.IsTimeout(err) {
			return "", 0, "timeout"
		}
		return "", 0, "transport"
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(res.Body, 64<<10))
	if res.StatusCode != http.StatusCreated {
		return "", 0, "http " + strconv.Itoa(res.StatusCode)
	}
	var out struct {
		ID      string `json:"id"`
		Version int64  `json:"version"`
	}
	if err := json.Unmarshal(b, &out); err != nil || out.ID == "" || out.Version < 1 {
		return "", 0, "bad 201 body"
	}
	return out.ID, out.Version, ""
}

// procMem is the memory of one process at the end of the run.
type procMem struct {
	Name string
	Mem  memInfo
	Err  error
}

// memory reads the peak RSS of each started binary (and the bench itself).
func (pl *pipeline) memory() []procMem {
	var out []procMem
	for _, p := range pl.procs {
		m, err := readMem(p.Pid())
		out = append(out, procMem{Name: p.Name, Mem: m, Err: err})
	}
	m, err := readMem(os.Getpid())
	return append(out, procMem{Name: "bench (load generator)", Mem: m, Err: err})
}

// cleanup stops the binaries and deletes the schema, topics, consumer
// groups and indices of this run. It runs with its own deadline, so it
// also works after the run's context was cancelled.
func (pl *pipeline) cleanup() error {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var errs []error
	// api first (no new writes), then relay and projectors.
	for i := len(pl.procs) - 1; i >= 0; i-- {
		if err := pl.procs[i].stop(15 * time.Second); err != nil {
			errs = append(errs, err)
		}
	}
	if pl.pgAdmin != nil {
		pl.pgAdmin.Close(ctx)
	}
	errs = append(errs, pl.deleteKafka(ctx), pl.deleteIndices(ctx), pl.dropSchema(ctx))
	err := errors.Join(errs...)
	if err != nil || pl.cfg.KeepLogs {
		fmt.Printf("pipeline: logs kept in %s\n", pl.workDir)
	} else {
		_ = os.RemoveAll(pl.workDir)
	}
	if err != nil {
		return fmt.Errorf("cleanup: %w", err)
	}
	fmt.Println("pipeline: cleaned up schema, topics, groups and indices")
	return nil
}

func (pl *pipeline) dropSchema(ctx context.Context) error {
	if pl.pgURL == "" {
		return nil // never created
	}
	conn, err := pgx.Connect(ctx, pl.cfg.PostgresURL)
	if err != nil {
		return fmt.Errorf("connecting to drop schema %s: %w", pl.schema, err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{pl.schema}.Sanitize()+" CASCADE"); err != nil {
		return fmt.Errorf("dropping schema %s: %w", pl.schema, err)
	}
	return nil
}

// deleteKafka deletes the run's topics (<prefix>.*) and every consumer
// group whose name contains the run id.
func (pl *pipeline) deleteKafka(ctx context.Context) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(config.SplitList(pl.cfg.KafkaBrokers)...))
	if err != nil {
		return fmt.Errorf("kafka client for cleanup: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	var errs []error
	groups, err := adm.ListGroups(ctx)
	if err != nil {
		errs = append(errs, fmt.Errorf("listing groups: %w", err))
	} else {
		var mine []string
		for _, g := range groups.Groups() {
			if strings.Contains(g, pl.runID) {
				mine = append(mine, g)
			}
		}
		if len(mine) > 0 {
			if _, err := adm.DeleteGroups(ctx, mine...); err != nil {
				errs = append(errs, fmt.Errorf("deleting groups %v: %w", mine, err))
			}
		}
	}
	topics, err := adm.ListTopics(ctx)
	if err != nil {
		errs = append(errs, fmt.Errorf("listing topics: %w", err))
	} else {
		var mine []string
		for _, t := range topics.Names() {
			if strings.HasPrefix(t, pl.topicPrefix+".") {
				mine = append(mine, t)
			}
		}
		if len(mine) > 0 {
			resp, err := adm.DeleteTopics(ctx, mine...)
			if err == nil {
				err = resp.Error()
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("deleting topics %v: %w", mine, err))
			}
		}
	}
	return errors.Join(errs...)
}

// deleteIndices deletes every index named <index prefix>*. Wildcard
// deletes are refused by Elasticsearch 8, so the names are resolved first.
func (pl *pipeline) deleteIndices(ctx context.Context) error {
	base := strings.TrimRight(pl.cfg.ElasticsearchURL, "/")
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/_cat/indices/"+pl.indexPrefix+"*?h=index&format=json&expand_wildcards=all", nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("listing indices %s*: %w", pl.indexPrefix, err)
	}
	defer res.Body.Close()
	if res.StatusCode == http.StatusNotFound {
		return nil
	}
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("listing indices %s*: %s", pl.indexPrefix, res.Status)
	}
	var rows []struct {
		Index string `json:"index"`
	}
	if err := json.NewDecoder(res.Body).Decode(&rows); err != nil {
		return fmt.Errorf("decoding index list: %w", err)
	}
	var names []string
	for _, r := range rows {
		if strings.HasPrefix(r.Index, pl.indexPrefix) {
			names = append(names, r.Index)
		}
	}
	if len(names) == 0 {
		return nil
	}
	dreq, _ := http.NewRequestWithContext(ctx, http.MethodDelete, base+"/"+strings.Join(names, ","), nil)
	dres, err := http.DefaultClient.Do(dreq)
	if err != nil {
		return fmt.Errorf("deleting indices %v: %w", names, err)
	}
	defer dres.Body.Close()
	if dres.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(dres.Body, 300))
		return fmt.Errorf("deleting indices %v: %s %s", names, dres.Status, msg)
	}
	return nil
}

// withSearchPath returns databaseURL with search_path set to schema.
func withSearchPath(databaseURL, schema string) (string, error) {
	return withParam(databaseURL, "search_path", schema)
}

// withParam returns databaseURL with the query parameter key set.
func withParam(databaseURL, key, value string) (string, error) {
	u, err := url.Parse(databaseURL)
	if err != nil {
		return "", fmt.Errorf("parsing database url: %w", err)
	}
	q := u.Query()
	q.Set(key, value)
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// appName is the PostgreSQL application_name of one of the run's processes.
func (pl *pipeline) appName(proc string) string { return "bench-" + pl.runID + "-" + proc }

// pgGroupPrefix names the CPU groups of PostgreSQL backends by client.
const pgGroupPrefix = "pg backends of "

// pgBackends maps the pids of the PostgreSQL backends serving the run's
// processes to a CPU group name ("pg backends of api"). Backends of other
// clients stay in the "postgresql (rest)" group.
func (pl *pipeline) pgBackends(ctx context.Context) map[int]string {
	if pl.pgAdmin == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	prefix := pl.appName("")
	rows, err := pl.pgAdmin.Query(ctx, "SELECT pid, application_name FROM pg_stat_activity WHERE starts_with(application_name, $1)", prefix)
	if err != nil {
		return nil
	}
	defer rows.Close()
	out := map[int]string{}
	for rows.Next() {
		var pid int
		var app string
		if rows.Scan(&pid, &app) == nil {
			out[pid] = pgGroupPrefix + strings.TrimPrefix(app, prefix)
		}
	}
	return out
}
