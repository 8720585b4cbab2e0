package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"cqrsflow/chaos/checker"
	"cqrsflow/chaos/history"
	"cqrsflow/chaos/nemesis"
	"cqrsflow/chaos/report"
	"cqrsflow/chaos/workload"
)

// topology is what the nemesis may hit: the base binaries, the three
// services and the base binaries' links (the joining processes come and
// go as faults of their own).
func topology(kinds []string) nemesis.Topology {
	var links []string
	for _, c := range baseComponents {
		for _, s := range servicesOf[c] {
			links = append(links, linkName(c, s))
		}
	}
	return nemesis.Topology{Binaries: baseComponents, Services: []string{"postgres", "kafka", "elasticsearch"},
		Links: links, Backends: []string{"api", "relay-1"}, Kinds: kinds}
}

// runOne is one seed: a fresh pipeline, the workload and the faults, the
// drain, the checks, the report. The error is for the harness failing
// (the stack gone, a binary that never starts); violations are in the
// report.
func (h *harness) runOne(ctx context.Context, seed uint64) (*report.Run, error) {
	p, err := h.newPipeline(seed)
	if err != nil {
		return nil, err
	}
	p.log = h.log.With("run", p.runID)
	p.log.Info("run starting", "seed", seed, "out", p.outDir, "schema", p.schema, "topic_prefix", p.topicPrefix)
	if err := h.cleanLeftovers(ctx); err != nil {
		p.log.Warn("cleaning what earlier runs left", "err", err)
	}
	if err := p.prepare(ctx); err != nil {
		return nil, err
	}
	stopped := false
	defer func() {
		if !stopped {
			_ = p.stop()
		}
	}()
	if err := p.start(ctx); err != nil {
		return nil, err
	}
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	go watch(wctx, p.bins)
	p.stopWatch = stopWatch
	ex, err := p.exercise(ctx, seed)
	if err != nil {
		return nil, err
	}
	stopped = true
	return p.judge(ctx, seed, ex)
}

// exercised is what happened while the workload and the nemesis ran.
type exercised struct {
	window          time.Duration
	steps           []nemesis.Step
	attempts        []history.Attempt
	faults          []history.Fault
	start, healedAt time.Time
	workEnd         time.Time
	historyPath     string
}

// exercise runs the workload and the seed's fault schedule; the workload
// goes on for the quiet time after the last fault is healed.
func (p *pipeline) exercise(ctx context.Context, seed uint64) (*exercised, error) {
	cfg, log := p.h.cfg, p.log
	ex := &exercised{window: cfg.Duration - cfg.Quiet, historyPath: filepath.Join(p.outDir, "history.jsonl")}
	hist, err := history.Create(ex.historyPath)
	if err != nil {
		return nil, err
	}
	var mu sync.Mutex
	ex.steps = nemesis.Plan(seed, ex.window, topology(cfg.Kinds), cfg.MaxFaults)
	var sched strings.Builder
	for _, s := range ex.steps {
		fmt.Fprintln(&sched, s)
	}
	_ = os.WriteFile(filepath.Join(p.outDir, "schedule.txt"), []byte(sched.String()), 0o644)
	log.Info("fault schedule", "faults", len(ex.steps), "file", filepath.Join(p.outDir, "schedule.txt"))

	ex.start = time.Now()
	counts := &workload.Counts{}
	wctx, stopWorkload := context.WithCancel(ctx)
	defer stopWorkload()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		workload.Run(wctx, workload.Config{
			BaseURL: p.apiURL(), APIKey: p.apiKey, RunID: p.runID, Seed: seed ^ 0x776f726b6c6f6164,
			Clients: cfg.Clients, Rate: cfg.Rate, MaxProducts: 40, MaxOpenOrders: 40, KeyedShare: 0.5,
			Timeout: 8 * time.Second, MaxAttempts: 6,
			Record: func(a history.Attempt) {
				hist.Add(a)
				mu.Lock()
				ex.attempts = append(ex.attempts, a)
				mu.Unlock()
			},
		}, counts)
	}()
	progressDone := make(chan struct{})
	go progress(wctx, log, ex.start, counts, progressDone)
	nctx, endFaults := context.WithTimeout(ctx, ex.window)
	nemesis.Run(nctx, ex.start, ex.steps, p, func(f history.Fault) {
		hist.Add(f)
		mu.Lock()
		ex.faults = append(ex.faults, f)
		mu.Unlock()
	}, log)
	endFaults()
	ex.healedAt = time.Now()
	// The pipeline must take writes again once the faults are healed.
	select {
	case <-ctx.Done():
	case <-time.After(max(cfg.Quiet, time.Until(ex.start.Add(cfg.Duration)))):
	}
	stopWorkload()
	wg.Wait()
	<-progressDone
	ex.workEnd = time.Now()
	if err := hist.Close(); err != nil {
		return nil, err
	}
	log.Info("workload done", "ops", counts.Ops.Load(), "acked", counts.Acked.Load(), "refused", counts.Refused.Load(),
		"open", counts.Ambiguous.Load(), "faults", len(ex.faults))
	return ex, ctx.Err()
}

// judge makes sure every service and binary is up, lets the pipeline
// drain, reads the final state, stops the binaries and checks the
// invariants. The run's names are deleted if every invariant held.
func (p *pipeline) judge(ctx context.Context, seed uint64, ex *exercised) (*report.Run, error) {
	h, cfg, log := p.h, p.h.cfg, p.log
	var notes []string
	if started, err := h.stk.ensureUp(ctx); err != nil {
		_ = p.stop()
		return nil, fmt.Errorf("the chaos stack is not up after the faults: %w", err)
	} else if len(started) > 0 {
		notes = append(notes, fmt.Sprintf("harness: %v were down after every fault was healed and had to be started", started))
		log.Warn("services down after the heal; started", "services", started)
	}
	drainTook, last := p.drain(ctx, cfg.DrainTimeout, oversizeKeys(ex.faults))
	log.Info("drained", "took", drainTook.Round(time.Second).String(), "state", last.String())
	in, err := p.collect(ctx, last)
	p.stopWatch()
	if stopErr := p.stop(); stopErr != nil {
		log.Warn("stopping the binaries", "err", stopErr)
	}
	if err != nil {
		return nil, err
	}
	for _, c := range allComponents {
		exits, hangs := p.bins[c].Exits()
		in.Exits, in.Hangs = append(in.Exits, exits...), append(in.Hangs, hangs...)
		in.Starts += p.bins[c].starts
	}
	if in.LogHits, in.DriftLogs, in.LogLines, err = p.scanLogs(); err != nil {
		return nil, err
	}
	in.Principal, in.Attempts, in.Faults, in.HealedAt, in.Grace = "chaos", ex.attempts, ex.faults, ex.healedAt, 15*time.Second
	in.PoisonAttempts = relayPoisonAttempts

	r := &report.Run{Seed: seed, RunID: p.runID, Window: ex.window, HealedAt: ex.healedAt, WorkloadEnd: ex.workEnd,
		Started: ex.start, Ended: time.Now(), OutDir: p.outDir, HistoryPath: ex.historyPath,
		Reproduce: fmt.Sprintf("make chaos CHAOS_SEED=%d CHAOS_DURATION=%s", seed, cfg.Duration),
		Settings: []string{fmt.Sprintf("%d clients at ~%g ops/s, up to %d faults at once, kinds %s", cfg.Clients, cfg.Rate, cfg.MaxFaults, strings.Join(cfg.Kinds, ",")),
			fmt.Sprintf("schema %s, topic prefix %s, index prefix %s, stack %s (ports from %d)", p.schema, p.topicPrefix, p.indexPrefix, h.stk.dir, cfg.PortBase),
			fmt.Sprintf("drained in %s", drainTook.Round(time.Second))},
		Schedule: ex.steps, Faults: ex.faults, Attempts: ex.attempts, Duplicates: checker.DuplicateRecords(in), Notes: notes}
	r.Results = checker.Check(in)
	r.Notes = append(r.Notes, startupNotes(in.Exits, ex.start)...)
	if inv, v, ok := r.First(); ok {
		r.Failure = p.failure(in, inv, v)
		return r, nil
	}
	cctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := errors.Join(h.deleteKafka(cctx, p.topicPrefix), h.deleteIndices(cctx, p.indexPrefix), p.dropSchema(cctx)); err != nil {
		log.Warn("cleaning up the run's names", "err", err)
	}
	return r, nil
}

// oversizeKeys are the aggregates oversize faults appended to (or tried
// to): their rows stay held in the outbox behind their dead letters.
func oversizeKeys(faults []history.Fault) []string {
	var out []string
	for _, f := range faults {
		if f.Kind == nemesis.Oversize {
			out = append(out, f.Keys...)
		}
	}
	return out
}

// startupNotes summarizes, per process, the exits during start-up (a
// dependency down at start): how many, when, and the last reason logged.
func startupNotes(exits []checker.Exit, start time.Time) []string {
	type agg struct {
		n           int
		first, last time.Time
		reason      string
	}
	byProc := map[string]*agg{}
	var order []string
	for _, e := range exits {
		if e.Expected || !e.DuringStartup {
			continue
		}
		a := byProc[e.Process]
		if a == nil {
			a = &agg{first: e.At}
			byProc[e.Process] = a
			order = append(order, e.Process)
		}
		a.n++
		a.last, a.reason = e.At, e.Reason
	}
	var notes []string
	for _, p := range order {
		a := byProc[p]
		notes = append(notes, fmt.Sprintf("%s exited %d times during start-up between +%s and +%s and was restarted; last words: %s",
			p, a.n, a.first.Sub(start).Round(time.Second), a.last.Sub(start).Round(time.Second), a.reason))
	}
	return notes
}

// progress logs the workload's totals every 15 s.
func progress(ctx context.Context, log interface{ Info(string, ...any) }, start time.Time, c *workload.Counts, done chan struct{}) {
	defer close(done)
	t := time.NewTicker(15 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			log.Info("workload", "elapsed", time.Since(start).Round(time.Second).String(), "ops", c.Ops.Load(),
				"attempts", c.Attempts.Load(), "acked", c.Acked.Load(), "refused", c.Refused.Load(), "open", c.Ambiguous.Load())
		}
	}
}

// collect reads the final state into the checker's input.
func (p *pipeline) collect(ctx context.Context, last drainState) (*checker.Input, error) {
	in := &checker.Input{Topics: map[string]string{"product": p.topic("product"), "order": p.topic("order")}, GroupLag: last.lag,
		Docs: map[string][]checker.Doc{}}
	var err error
	if err = p.readStore(ctx, in); err != nil {
		return nil, err
	}
	if last.err != nil || last.lag == nil {
		if in.GroupLag, err = p.groupLag(ctx); err != nil {
			return nil, err
		}
	}
	if in.Records, in.Partitions, err = p.readTopics(ctx, []string{p.topic("product"), p.topic("order")}); err != nil {
		return nil, err
	}
	if in.DLQ, _, err = p.readTopics(ctx, []string{p.topic("product") + ".dlq", p.topic("order") + ".dlq"}); err != nil {
		return nil, err
	}
	for agg, proj := range map[string]string{"product": "products", "order": "orders"} {
		if in.Docs[agg], err = p.readDocs(ctx, proj); err != nil {
			return nil, err
		}
	}
	for _, c := range baseComponents {
		if c == "api" {
			continue
		}
		in.MetricProcs = append(in.MetricProcs, c)
		s, err := scrape(ctx, p.bins[c])
		if err != nil {
			continue // the checker reports the missing gauges
		}
		in.Metrics = append(in.Metrics, s...)
	}
	return in, nil
}

func (p *pipeline) dropSchema(ctx context.Context) error {
	conn, err := pgx.Connect(ctx, p.h.stk.PostgresURL(p.h.stk.port(offPostgres)))
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{p.schema}.Sanitize()+" CASCADE")
	return err
}
