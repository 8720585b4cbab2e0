// Package pipeline is the pipeline part (`bench pipeline`): the whole
// pipeline, end to end, through the real binaries. It builds api,
// outbox-relay and projector, starts them against the local stack with a
// fresh PostgreSQL schema, topic prefix and index prefix, and drives
// product creates through the API with an open-loop generator at several
// steady rates. For a sample of the writes it measures commit (the API's
// 201) → searchable (the document at that version is returned by a
// _search on the read alias). It finds the highest rate whose p99 stays
// under the SLO, records each process's CPU and peak RSS, and cleans up
// everything it created, also on failure.
package pipeline

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"cqrsflow/bench/internal/result"
	"cqrsflow/internal/testenv"
	"cqrsflow/internal/testenv/binary"
)

// pipeline is one run: the names it created and the processes it started.
type pipeline struct {
	cfg         pipelineConfig
	runID       string
	schema      string // name of the run's schema
	topicPrefix string
	indexPrefix string
	alias       string
	db          *testenv.Schema // nil until created
	pgURL       string          // with search_path
	apiKey      string
	workDir     string
	procs       []*binary.Process
	api         *binary.Process
	stages      []stageMetric
	notes       []string // what the rate plan skipped or why it stopped
	settles     int
	pgAdmin     *pgx.Conn // for pg_stat_activity (CPU of backends by client)
	client      *http.Client
	poller      *visPoller
}

// Run is the pipeline part.
func Run(ctx context.Context, args []string) (err error) {
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
	path, err := result.Save(pipelineResult(cfg, started, steps, maxOK, pl.memory(), pl))
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

func newPipeline(cfg pipelineConfig) (*pipeline, error) {
	id := testenv.RandomHex(4)
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
		apiKey:      "bench-" + testenv.RandomHex(16),
		workDir:     dir,
	}
	pl.alias = pl.indexPrefix + "products"
	tr := &http.Transport{MaxIdleConns: cfg.MaxInFlight, MaxIdleConnsPerHost: cfg.MaxInFlight, IdleConnTimeout: 90 * time.Second}
	pl.client = &http.Client{Transport: tr, Timeout: 10 * time.Second}
	pl.poller = newVisPoller(cfg.ElasticsearchURL, pl.alias, cfg.PollInterval)
	return pl, nil
}
