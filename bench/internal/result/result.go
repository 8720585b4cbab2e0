// Package result is what every benchmark part hands to the report: one
// JSON file per part, <results dir>/<part>.json. Save is the only writer
// and Load the only reader, and both use one directory: $BENCH_RESULTS_DIR
// (default bench-results), so the report never mixes places.
package result

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// DirEnv names the directory the parts write their results to.
const DirEnv = "BENCH_RESULTS_DIR"

// defaultDir is used when BENCH_RESULTS_DIR is not set.
const defaultDir = "bench-results"

// QuickEnv turns every part into its short version (BENCH_QUICK=1).
const QuickEnv = "BENCH_QUICK"

// Result is one part's outcome.
type Result struct {
	Part      string    `json:"part"` // "write", "relay", "projector", "read", "pipeline"
	Quick     bool      `json:"quick"`
	StartedAt time.Time `json:"started_at"`
	Seconds   float64   `json:"seconds"` // wall time of the part
	// Rows are the lines of the summary table.
	Rows []Row `json:"rows"`
	// Tables are detail tables rendered in BENCHMARKS.md.
	Tables []Table `json:"tables,omitempty"`
	// Series feed the plots (see the report's plot.go for the names it draws).
	Series []Series `json:"series,omitempty"`
	Notes  []string `json:"notes,omitempty"`
}

// Row is one measured number, optionally with the raw baseline it is
// compared to.
type Row struct {
	Name          string  `json:"name"` // "api create throughput (64 clients)"
	Value         float64 `json:"value"`
	Unit          string  `json:"unit"`               // "cmd/s", "events/s", "ms", "MiB"
	Baseline      string  `json:"baseline,omitempty"` // "raw pgx transaction"
	BaselineValue float64 `json:"baseline_value,omitempty"`
	Ratio         float64 `json:"ratio,omitempty"`  // Value / BaselineValue
	Target        string  `json:"target,omitempty"` // "ratio ≥ 0.6", "p99 < 2 s"
	// Pass says whether Target was met; nil when there is no target.
	Pass *bool `json:"pass,omitempty"`
}

// Table is a detail table (already formatted cells).
type Table struct {
	Title   string     `json:"title"`
	Columns []string   `json:"columns"`
	Rows    [][]string `json:"rows"`
}

// Series is a named list of points for a plot.
type Series struct {
	Name   string  `json:"name"`
	XLabel string  `json:"x_label,omitempty"`
	YLabel string  `json:"y_label,omitempty"`
	Points []Point `json:"points"`
}

// Point is one (x, y) pair of a series.
type Point struct {
	X float64 `json:"x"`
	Y float64 `json:"y"`
}

// WithBaseline sets the baseline of r and computes the ratio.
func (r Row) WithBaseline(name string, value float64) Row {
	r.Baseline, r.BaselineValue = name, value
	if value != 0 {
		r.Ratio = r.Value / value
	}
	return r
}

// WithTarget records a target and whether it was met.
func (r Row) WithTarget(target string, pass bool) Row {
	r.Target, r.Pass = target, &pass
	return r
}

// Quick reports whether BENCH_QUICK asks for the short version.
func Quick() bool {
	switch strings.ToLower(strings.TrimSpace(os.Getenv(QuickEnv))) {
	case "", "0", "false", "no":
		return false
	}
	return true
}

// Pick is q in a quick run, else full.
func Pick[T any](quick bool, q, full T) T {
	if quick {
		return q
	}
	return full
}

// PassWord is how a met or missed target reads in a part's output.
func PassWord(ok bool) string {
	if ok {
		return "PASS"
	}
	return "MISS"
}

// Dir is where the parts write and the report reads results.
func Dir() string {
	if d := os.Getenv(DirEnv); d != "" {
		return d
	}
	return defaultDir
}

// ErrNoPart is a result without a part name.
var ErrNoPart = errors.New("result has no part name")

// Save writes r to Dir()/<part>.json (atomically: temp file + rename) and
// returns the path.
func Save(r Result) (string, error) {
	if r.Part == "" {
		return "", ErrNoPart
	}
	if err := r.validate(); err != nil {
		return "", err
	}
	dir := Dir()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("creating results dir: %w", err)
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return "", fmt.Errorf("encoding %s result: %w", r.Part, err)
	}
	path := filepath.Join(dir, r.Part+".json")
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return "", fmt.Errorf("writing %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return "", fmt.Errorf("renaming %s: %w", tmp, err)
	}
	return path, nil
}

// validate rejects values JSON cannot carry (NaN, ±Inf), naming the row.
func (r Result) validate() error {
	var errs []error
	bad := func(v float64) bool { return math.IsNaN(v) || math.IsInf(v, 0) }
	for i, row := range r.Rows {
		if bad(row.Value) || bad(row.BaselineValue) || bad(row.Ratio) {
			errs = append(errs, fmt.Errorf("%s row %d (%q): value, baseline or ratio is NaN or infinite", r.Part, i, row.Name))
		}
	}
	for _, s := range r.Series {
		for i, p := range s.Points {
			if bad(p.X) || bad(p.Y) {
				errs = append(errs, fmt.Errorf("%s series %q point %d is NaN or infinite", r.Part, s.Name, i))
			}
		}
	}
	return errors.Join(errs...)
}

// Load reads every *.json result in Dir(), ordered by Parts then name.
// Files that do not decode are reported, not skipped silently.
func Load() ([]Result, error) {
	dir := Dir()
	paths, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return nil, fmt.Errorf("listing %s: %w", dir, err)
	}
	var (
		out  []Result
		errs []error
	)
	for _, p := range paths {
		r, err := read(p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, r)
	}
	sort.SliceStable(out, func(i, j int) bool {
		oi, oj := partRank(out[i].Part), partRank(out[j].Part)
		if oi != oj {
			return oi < oj
		}
		return out[i].Part < out[j].Part
	})
	return out, errors.Join(errs...)
}

func read(path string) (Result, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Result{}, fmt.Errorf("reading %s: %w", path, err)
	}
	var r Result
	if err := json.Unmarshal(b, &r); err != nil {
		return Result{}, fmt.Errorf("decoding %s: %w", path, err)
	}
	if r.Part == "" {
		return Result{}, fmt.Errorf("%s: %w", path, ErrNoPart)
	}
	return r, nil
}

// Parts are the parts `make bench` runs, in the order of the summary: the
// data flow.
var Parts = []string{"write", "relay", "projector", "read", "pipeline"}

func partRank(p string) int {
	for i, n := range Parts {
		if n == p {
			return i
		}
	}
	return len(Parts)
}

// FormatNum prints a number with about three significant digits, without
// exponent notation, for the tables.
func FormatNum(v float64) string {
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
