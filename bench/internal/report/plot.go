package report

// Plots drawn by the report from the parts' series. A series named
// "<plot id>/<line label>" becomes one line of the plot <part>_<plot id>.png;
// every line of one plot shares the series' axis labels.
//
// The plots BENCHMARKS.md shows:
//   - pipeline_latency_vs_rate.png: series "latency_vs_rate/<percentile>"
//     of the pipeline part (x = offered writes/s, y = ms, log scale);
//   - projector_throughput_vs_workers.png: series
//     "throughput_vs_workers/<label>" of the projector part (x = workers,
//     y = events/s).

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"

	"cqrsflow/bench/internal/result"
)

// plotTitles are the titles of the plots the report knows by id.
var plotTitles = map[string]string{
	"latency_vs_rate":       "Latency vs offered write rate",
	"throughput_vs_workers": "Projector throughput vs workers",
}

// plotGroup is one plot: lines sharing axes.
type plotGroup struct {
	Part, ID       string
	XLabel, YLabel string
	Lines          []result.Series // Name = line label
}

// File is the PNG file name of the plot.
func (g plotGroup) File() string { return g.Part + "_" + g.ID + ".png" }

// Title is the plot's title.
func (g plotGroup) Title() string {
	if t, ok := plotTitles[g.ID]; ok {
		return t
	}
	return strings.ReplaceAll(g.ID, "_", " ")
}

// logY draws latency plots on a log scale (they span 10 ms to seconds).
func (g plotGroup) logY() bool { return strings.Contains(g.ID, "latency") }

// plotGroups collects the "<id>/<label>" series of every result, in the
// order they appear.
func plotGroups(results []result.Result) []plotGroup {
	var groups []plotGroup
	index := map[string]int{}
	for _, r := range results {
		for _, s := range r.Series {
			id, label, ok := strings.Cut(s.Name, "/")
			if !ok || id == "" || label == "" || len(s.Points) == 0 {
				continue
			}
			key := r.Part + "\x00" + id
			i, seen := index[key]
			if !seen {
				i = len(groups)
				index[key] = i
				groups = append(groups, plotGroup{Part: r.Part, ID: id, XLabel: s.XLabel, YLabel: s.YLabel})
			}
			line := s
			line.Name = label
			groups[i].Lines = append(groups[i].Lines, line)
		}
	}
	return groups
}

// drawPlots writes one PNG per group into dir and returns the file names.
func drawPlots(dir string, groups []plotGroup) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating plot dir: %w", err)
	}
	var files []string
	for _, g := range groups {
		p, err := buildPlot(g)
		if err != nil {
			return files, fmt.Errorf("plot %s: %w", g.File(), err)
		}
		if err := p.Save(16*vg.Centimeter, 10*vg.Centimeter, filepath.Join(dir, g.File())); err != nil {
			return files, fmt.Errorf("saving %s: %w", g.File(), err)
		}
		files = append(files, g.File())
	}
	return files, nil
}

func buildPlot(g plotGroup) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = g.Title()
	p.X.Label.Text = g.XLabel
	p.Y.Label.Text = g.YLabel
	p.Legend.Top = true
	p.Legend.Left = true
	p.Add(plotter.NewGrid())
	if g.logY() {
		p.Y.Scale = plot.LogScale{}
		p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
	}
	xs := map[float64]bool{}
	var args []any
	for _, l := range g.Lines {
		pts := make(plotter.XYs, 0, len(l.Points))
		for _, pt := range l.Points {
			if g.logY() && pt.Y <= 0 {
				continue // no place on a log axis
			}
			pts = append(pts, plotter.XY{X: pt.X, Y: pt.Y})
			xs[pt.X] = true
		}
		if len(pts) == 0 {
			continue
		}
		sort.Slice(pts, func(i, j int) bool { return pts[i].X < pts[j].X })
		args = append(args, l.Name, pts)
	}
	if len(args) == 0 {
		return nil, fmt.Errorf("no points to draw")
	}
	if err := plotutil.AddLinePoints(p, args...); err != nil {
		return nil, err
	}
	if t, ok := integerTicks(xs); ok {
		p.X.Tick.Marker = t
	}
	// Start the y axis at zero on linear plots (throughput reads honestly
	// from zero) and leave headroom above the lines for the legend.
	if g.logY() {
		p.Y.Max *= 4
	} else {
		p.Y.Min = math.Min(p.Y.Min, 0)
		p.Y.Max += 0.25 * (p.Y.Max - p.Y.Min)
	}
	p.X.Min, p.X.Max = padRange(p.X.Min, p.X.Max)
	return p, nil
}

// integerTicks labels exactly the x values when they are few integers
// (workers 1, 2, 4).
func integerTicks(xs map[float64]bool) (plot.ConstantTicks, bool) {
	if len(xs) == 0 || len(xs) > 12 {
		return nil, false
	}
	var ticks plot.ConstantTicks
	for x := range xs {
		if x != math.Trunc(x) {
			return nil, false
		}
		ticks = append(ticks, plot.Tick{Value: x, Label: strconv.FormatFloat(x, 'f', -1, 64)})
	}
	sort.Slice(ticks, func(i, j int) bool { return ticks[i].Value < ticks[j].Value })
	// Labels closer than 8% of the range to the previous label would
	// overlap: keep their tick mark, drop the label.
	span := ticks[len(ticks)-1].Value - ticks[0].Value
	last := math.Inf(-1)
	for i := range ticks {
		if ticks[i].Value-last < 0.08*span {
			ticks[i].Label = ""
			continue
		}
		last = ticks[i].Value
	}
	return ticks, true
}

// padRange widens [min, max] by 5% each side so end points are not drawn
// on the frame.
func padRange(lo, hi float64) (float64, float64) {
	d := hi - lo
	if d == 0 {
		d = math.Max(math.Abs(hi), 1)
	}
	return lo - 0.05*d, hi + 0.05*d
}
