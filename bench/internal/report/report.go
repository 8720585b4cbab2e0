// Package report is `bench report`: it reads every part's result from the
// results directory, prints one summary table, rewrites the generated
// block of BENCHMARKS.md and draws the plots.
package report

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"cqrsflow/bench/internal/cli"
	"cqrsflow/bench/internal/result"
	"cqrsflow/internal/config"
)

type reportConfig struct {
	MD       string
	PlotDir  string
	Since    string // RFC 3339; results older than this are stale
	NoMD     bool
	PG       string
	ES       string
	StateDir string
}

func parseConfig(args []string) (reportConfig, time.Time, error) {
	set := config.NewSet("report")
	fs := set.FlagSet()
	var cfg reportConfig
	fs.StringVar(&cfg.MD, "md", "BENCHMARKS.md", "markdown file whose generated block is rewritten")
	fs.StringVar(&cfg.PlotDir, "plots", "docs/bench", "directory for the PNG plots")
	fs.BoolVar(&cfg.NoMD, "no-md", false, "print the summary only; do not touch the markdown file or the plots")
	set.String(&cfg.Since, "BENCH_SINCE", "", "ignore results that started before this RFC 3339 time (set by `make bench`)")
	set.URL(&cfg.PG, "POSTGRES_URL", config.DefaultPostgresURL, "PostgreSQL, for its version")
	set.URL(&cfg.ES, "ELASTICSEARCH_URL", config.DefaultElasticsearchURL, "Elasticsearch, for its version")
	cfg.StateDir = config.StateDir()
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: bench report [flags]\nreads %s (default bench-results)/<part>.json\n", result.DirEnv)
		fs.PrintDefaults()
	}
	if err := cli.Parse(fs, args); err != nil {
		return cfg, time.Time{}, err
	}
	if err := set.Err(); err != nil {
		return cfg, time.Time{}, cli.UsageError{Err: err}
	}
	var since time.Time
	if cfg.Since != "" {
		t, err := time.Parse(time.RFC3339, cfg.Since)
		if err != nil {
			return cfg, since, cli.Usagef("BENCH_SINCE: %q is not an RFC 3339 time", cfg.Since)
		}
		since = t
	}
	return cfg, since, nil
}

// Run is the report part.
func Run(ctx context.Context, args []string) error {
	cfg, since, err := parseConfig(args)
	if err != nil {
		return err
	}
	results, loadErr := result.Load()
	results, stale := dropStale(results, since)
	missing := missingParts(results)
	machine := gatherMachine(ctx, stackEndpoints{PostgresURL: cfg.PG, ElasticsearchURL: cfg.ES, StateDir: cfg.StateDir})
	run := runInfo{Now: time.Now().UTC(), Since: since, Quick: anyQuick(results)}

	fmt.Println()
	writeSummaryText(os.Stdout, run, results, missing, stale)
	if loadErr != nil {
		fmt.Fprintln(os.Stderr, "bench report:", loadErr)
	}
	if cfg.NoMD {
		return loadErr
	}

	files, plotErr := drawPlots(cfg.PlotDir, plotGroups(results))
	relPlots := make([]string, len(files))
	for i, f := range files {
		relPlots[i] = relPath(filepath.Dir(cfg.MD), filepath.Join(cfg.PlotDir, f))
	}
	block := renderMarkdown(run, machine, results, missing, stale, relPlots)
	if err := rewriteMarkdown(cfg.MD, block); err != nil {
		return errors.Join(loadErr, plotErr, err)
	}
	fmt.Printf("\nwrote %s and %d plot(s) in %s\n", cfg.MD, len(files), cfg.PlotDir)
	return errors.Join(loadErr, plotErr)
}

type runInfo struct {
	Now   time.Time
	Since time.Time
	Quick bool
}

// dropStale separates results older than since (left over from an earlier
// run) from the current ones.
func dropStale(results []result.Result, since time.Time) (cur, stale []result.Result) {
	for _, r := range results {
		if !since.IsZero() && r.StartedAt.Before(since) {
			stale = append(stale, r)
			continue
		}
		cur = append(cur, r)
	}
	return cur, stale
}

// missingParts names the parts `make bench` runs that left no result, so
// the summary says so instead of silently leaving them out.
func missingParts(results []result.Result) []string {
	have := map[string]bool{}
	for _, r := range results {
		have[r.Part] = true
	}
	var out []string
	for _, p := range result.Parts {
		if !have[p] {
			out = append(out, p)
		}
	}
	return out
}

func anyQuick(results []result.Result) bool {
	for _, r := range results {
		if r.Quick {
			return true
		}
	}
	return false
}
