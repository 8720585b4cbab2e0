// Command chaos is cqrsflow's randomized fault test (make chaos): it starts
// its own PostgreSQL, Kafka and Elasticsearch (deploy/local scripts, own
// state dir and ports), builds and runs the real binaries through TCP
// proxies, drives a random workload while a seeded nemesis injects faults
// (kill -9, SIGSTOP, crashes and restarts of the services, cut and slow
// links, processes joining and leaving, poison records, oversized rows in
// the outbox), lets the pipeline drain and checks its guarantees
// (chaos/checker). Each seed writes a history file and a report; the exit
// status is 1 if any invariant was violated. See docs/testing.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"cqrsflow/chaos/report"
)

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg, err := parseConfig(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "chaos: %v\n", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo})).With("component", "chaos")
	for i, s := range cfg.Seeds {
		how := "given"
		if cfg.SeedsRandom[i] {
			how = "random"
		}
		fmt.Fprintf(stdout, "chaos: run %d of %d: seed %d (%s); reproduce with CHAOS_SEED=%d CHAOS_DURATION=%s\n", i+1, len(cfg.Seeds), s, how, s, cfg.Duration)
	}
	runs, err := execute(ctx, cfg, log)
	failed := err != nil
	if err != nil {
		fmt.Fprintf(stderr, "chaos: %v\n", err)
	}
	fmt.Fprintln(stdout)
	for _, r := range runs {
		path := filepath.Join(r.OutDir, "report.txt")
		var b strings.Builder
		report.Render(&b, r)
		if werr := os.WriteFile(path, []byte(b.String()), 0o644); werr != nil {
			fmt.Fprintf(stderr, "chaos: writing %s: %v\n", path, werr)
		}
		fmt.Fprint(stdout, b.String())
		fmt.Fprintf(stdout, "report: %s\n\n", path)
	}
	for _, r := range runs {
		verdict := "PASS"
		if r.Failed() {
			failed = true
			inv, v, _ := r.First()
			verdict = fmt.Sprintf("FAIL: %s on %s: %s", inv, v.Key, v.Msg)
		}
		fmt.Fprintf(stdout, "chaos: seed %d: %s (%d faults, %d attempts) %s\n", r.Seed, verdictWord(r), len(r.Faults), len(r.Attempts), verdict)
	}
	if failed {
		return 1
	}
	return 0
}

func verdictWord(r *report.Run) string {
	if r.Failed() {
		return "violations"
	}
	return "all invariants held"
}

// execute starts the chaos stack and the proxies, builds the binaries,
// runs every seed, and stops the stack, also on failure.
func execute(ctx context.Context, cfg config, log *slog.Logger) (runs []*report.Run, err error) {
	stk := &stack{repo: cfg.Repo, dir: cfg.StateDir, base: cfg.PortBase, logPath: filepath.Join(cfg.StateDir, "stack.log"), log: log}
	h := &harness{cfg: cfg, stk: stk, binDir: filepath.Join(cfg.StateDir, "bin"), log: log}
	if err := os.MkdirAll(cfg.OutDir, 0o755); err != nil {
		return nil, err
	}
	if err := stk.writeKafkaExtra(kafkaComponents, func(c string) int { return h.proxyPort(linkName(c, "kafka")) }); err != nil {
		return nil, err
	}
	if stk.running() {
		log.Info("stopping a chaos stack left running by an earlier invocation", "state_dir", stk.dir)
		if err := stk.stopAll(); err != nil {
			return nil, err
		}
	}
	if err := stk.portsFree(); err != nil {
		return nil, err
	}
	if err := h.startProxies(); err != nil {
		return nil, err
	}
	defer h.closeProxies()
	defer func() {
		if cfg.KeepStack {
			log.Info("leaving the chaos stack running (CHAOS_KEEP_STACK)", "state_dir", stk.dir, "stop", "CQRSFLOW_STATE_DIR="+stk.dir+" deploy/local/down.sh")
			return
		}
		t := time.Now()
		if serr := stk.stopAll(); serr != nil {
			err = errors.Join(err, fmt.Errorf("stopping the chaos stack: %w", serr))
		}
		log.Info("chaos stack stopped", "took", time.Since(t).Round(time.Second).String())
	}()
	t := time.Now()
	var (
		wg       sync.WaitGroup
		buildErr error
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		buildErr = h.build(ctx)
	}()
	log.Info("starting the chaos stack", "state_dir", stk.dir, "postgres", stk.addr(offPostgres), "kafka", stk.KafkaAddr(), "elasticsearch", stk.ESURL())
	stackErr := stk.startAll(ctx)
	wg.Wait()
	if err := errors.Join(stackErr, buildErr); err != nil {
		return nil, err
	}
	log.Info("chaos stack up and binaries built", "took", time.Since(t).Round(time.Second).String())
	for _, seed := range cfg.Seeds {
		if ctx.Err() != nil {
			return runs, ctx.Err()
		}
		r, err := h.runOne(ctx, seed)
		if err != nil {
			return runs, fmt.Errorf("seed %d: %w", seed, err)
		}
		runs = append(runs, r)
	}
	return runs, nil
}
