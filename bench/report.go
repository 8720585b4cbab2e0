package main

// `bench report`: reads every part's JSON result, prints one summary table,
// rewrites the generated block of BENCHMARKS.md and draws the plots.

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"cqrsflow/internal/config"
)

func init() { parts["report"] = runReport }

// Markers around the generated block of BENCHMARKS.md.
const (
	mdStart = "<!-- bench:results:start -->"
	mdEnd   = "<!-- bench:results:end -->"
)

// expectedParts are the parts `make bench` runs; a missing one is named in
// the summary instead of silently left out.
var expectedParts = []string{"write", "relay", "projector", "pipeline"}

type reportConfig struct {
	Dir      string
	MD       string
	PlotDir  string
	Since    string // RFC 3339; results older than this are stale
	NoMD     bool
	PG       string
	ES       string
	StateDir string
}

func runReport(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("report", flag.ContinueOnError)
	var cfg reportConfig
	fs.StringVar(&cfg.Dir, "dir", resultsDir(), "directory with the parts' <part>.json results (env "+resultsDirEnv+")")
	fs.StringVar(&cfg.MD, "md", "BENCHMARKS.md", "markdown file whose generated block is rewritten")
	fs.StringVar(&cfg.PlotDir, "plots", "docs/bench", "directory for the PNG plots")
	fs.BoolVar(&cfg.NoMD, "no-md", false, "print the summary only; do not touch the markdown file or the plots")
	config.String(fs, &cfg.Since, "BENCH_SINCE", "", "ignore results that started before this RFC 3339 time (set by `make bench`)")
	config.String(fs, &cfg.PG, "POSTGRES_URL", config.DefaultPostgresURL, "PostgreSQL, for its version")
	config.String(fs, &cfg.ES, "ELASTICSEARCH_URL", config.DefaultElasticsearchURL, "Elasticsearch, for its version")
	config.String(fs, &cfg.StateDir, "CQRSFLOW_STATE_DIR", "/var/tmp/cqrsflow-local", "local stack state dir, for the Kafka broker's pid")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var since time.Time
	if cfg.Since != "" {
		t, err := time.Parse(time.RFC3339, cfg.Since)
		if err != nil {
			return fmt.Errorf("BENCH_SINCE: %q is not an RFC 3339 time", cfg.Since)
		}
		since = t
	}

	results, loadErr := loadResults(cfg.Dir)
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
func dropStale(results []Result, since time.Time) (cur, stale []Result) {
	for _, r := range results {
		if !since.IsZero() && r.StartedAt.Before(since) {
			stale = append(stale, r)
			continue
		}
		cur = append(cur, r)
	}
	return cur, stale
}

func missingParts(results []Result) []string {
	have := map[string]bool{}
	for _, r := range results {
		have[r.Part] = true
	}
	var out []string
	for _, p := range expectedParts {
		if !have[p] {
			out = append(out, p)
		}
	}
	return out
}

func anyQuick(results []Result) bool {
	for _, r := range results {
		if r.Quick {
			return true
		}
	}
	return false
}

// fmtNum prints a number with about three significant digits, without
// exponent notation.
func fmtNum(v float64) string {
	a := math.Abs(v)
	switch {
	case v == 0:
		return "0"
	case a >= 100:
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	case a >= 1:
		return fmt.Sprintf("%.2f", v)
	default:
		return fmt.Sprintf("%.3f", v)
	}
}

func fmtValue(v float64, unit string) string {
	if unit == "" {
		return fmtNum(v)
	}
	return fmtNum(v) + " " + unit
}

// cells returns the summary columns of a row: metric, value, baseline,
// ratio, target.
func (r Row) cells() [5]string {
	var c [5]string
	c[0] = r.Name
	c[1] = fmtValue(r.Value, r.Unit)
	if r.Baseline != "" {
		c[2] = r.Baseline + ": " + fmtValue(r.BaselineValue, r.Unit)
		if r.BaselineValue != 0 {
			c[3] = fmt.Sprintf("%.2f", r.Ratio)
		}
	}
	if r.Target != "" {
		c[4] = r.Target
		if r.Pass != nil {
			if *r.Pass {
				c[4] += " ✓"
			} else {
				c[4] += " ✗"
			}
		}
	}
	return c
}

func runHeadline(run runInfo) string {
	mode := "full run"
	if run.Quick {
		mode = "quick run (BENCH_QUICK=1)"
	}
	s := fmt.Sprintf("%s, finished %s", mode, run.Now.Format("2006-01-02 15:04 UTC"))
	if !run.Since.IsZero() {
		s += fmt.Sprintf(", whole `make bench` took %s", run.Now.Sub(run.Since).Round(time.Second))
	}
	return s
}

// writeSummaryText prints the combined summary table for the terminal.
func writeSummaryText(w io.Writer, run runInfo, results []Result, missing []string, stale []Result) {
	fmt.Fprintf(w, "cqrsflow benchmark summary — %s\n\n", runHeadline(run))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PART\tMETRIC\tVALUE\tBASELINE\tRATIO\tTARGET")
	for _, r := range results {
		for _, row := range r.Rows {
			c := row.cells()
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.Part, c[0], c[1], c[2], c[3], c[4])
		}
	}
	tw.Flush()
	for _, p := range missing {
		fmt.Fprintf(w, "\n%s: no result from this run (the part did not run or failed)", p)
	}
	for _, r := range stale {
		fmt.Fprintf(w, "\n%s: ignored a stale result from %s", r.Part, r.StartedAt.Format(time.RFC3339))
	}
	for _, r := range results {
		for _, n := range r.Notes {
			fmt.Fprintf(w, "\n%s: %s", r.Part, n)
		}
	}
	fmt.Fprintln(w)
}

// mdEscape keeps a cell from breaking the markdown table.
func mdEscape(s string) string {
	return strings.NewReplacer("|", `\|`, "\n", " ").Replace(s)
}

func mdTable(b *strings.Builder, cols []string, rows [][]string) {
	esc := func(cells []string) []string {
		out := make([]string, len(cells))
		for i, c := range cells {
			out[i] = mdEscape(c)
		}
		return out
	}
	b.WriteString("| " + strings.Join(esc(cols), " | ") + " |\n")
	b.WriteString("|" + strings.Repeat(" --- |", len(cols)) + "\n")
	for _, r := range rows {
		cells := make([]string, len(cols))
		copy(cells, r)
		b.WriteString("| " + strings.Join(esc(cells), " | ") + " |\n")
	}
}

// renderMarkdown builds the generated block (without the markers).
func renderMarkdown(run runInfo, m machineInfo, results []Result, missing []string, stale []Result, plots []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "_Generated by `make bench` (%s). Do not edit this block by hand: the next run rewrites it._\n\n", runHeadline(run))

	b.WriteString("### Machine\n\n")
	cpu := fmt.Sprintf("%d cores", m.Cores)
	if m.CPUModel != "" {
		cpu += " — " + m.CPUModel
	}
	mdTable(&b, []string{"What", "This run"}, [][]string{
		{"CPU", cpu},
		{"Memory", m.MemTotal},
		{"Kernel", m.Kernel},
		{"Go", m.Go},
		{"PostgreSQL", m.PostgreSQL},
		{"Kafka", m.Kafka},
		{"Elasticsearch", m.Elasticsearch},
	})

	b.WriteString("\n### Summary\n\n")
	var rows [][]string
	for _, r := range results {
		for _, row := range r.Rows {
			c := row.cells()
			rows = append(rows, []string{r.Part, c[0], c[1], c[2], c[3], c[4]})
		}
	}
	mdTable(&b, []string{"Part", "Metric", "Value", "Baseline", "Ratio", "Target"}, rows)
	if len(missing) > 0 || len(stale) > 0 {
		b.WriteString("\n")
	}
	for _, p := range missing {
		fmt.Fprintf(&b, "- **%s**: no result from this run (the part did not run or failed).\n", p)
	}
	for _, r := range stale {
		fmt.Fprintf(&b, "- **%s**: a stale result from %s was ignored.\n", r.Part, r.StartedAt.Format(time.RFC3339))
	}

	for _, r := range results {
		if len(r.Tables) == 0 && len(r.Notes) == 0 {
			continue
		}
		fmt.Fprintf(&b, "\n### %s (%.0f s)\n", r.Part, r.Seconds)
		for _, t := range r.Tables {
			fmt.Fprintf(&b, "\n**%s**\n\n", mdEscape(t.Title))
			mdTable(&b, t.Columns, t.Rows)
		}
		if len(r.Notes) > 0 {
			b.WriteString("\n")
		}
		for _, n := range r.Notes {
			fmt.Fprintf(&b, "- %s\n", n)
		}
	}

	if len(plots) > 0 {
		b.WriteString("\n### Plots\n\n")
		for _, p := range plots {
			fmt.Fprintf(&b, "![%s](%s)\n\n", strings.TrimSuffix(filepath.Base(p), ".png"), filepath.ToSlash(p))
		}
	}
	return strings.TrimRight(b.String(), "\n") + "\n"
}

// rewriteMarkdown replaces the text between the markers of path with
// block. A file without the markers gets the block appended; a missing
// file is created.
func rewriteMarkdown(path, block string) error {
	old, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("reading %s: %w", path, err)
	}
	out, err := replaceBlock(string(old), block)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(out), 0o644); err != nil {
		return fmt.Errorf("writing %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("renaming %s: %w", tmp, err)
	}
	return nil
}

var errMarkers = errors.New("benchmark markers out of order or duplicated")

// replaceBlock puts block between the markers of doc.
func replaceBlock(doc, block string) (string, error) {
	si, ei := strings.Index(doc, mdStart), strings.Index(doc, mdEnd)
	switch {
	case si < 0 && ei < 0:
		if doc != "" && !strings.HasSuffix(doc, "\n") {
			doc += "\n"
		}
		if doc != "" {
			doc += "\n"
		}
		return doc + mdStart + "\n" + block + mdEnd + "\n", nil
	case si < 0 || ei < 0 || ei < si ||
		strings.Count(doc, mdStart) != 1 || strings.Count(doc, mdEnd) != 1:
		return "", errMarkers
	}
	return doc[:si+len(mdStart)] + "\n" + block + doc[ei:], nil
}

// relPath is target relative to base, or target itself when that fails.
func relPath(base, target string) string {
	if r, err := filepath.Rel(base, target); err == nil {
		return r
	}
	return target
}
