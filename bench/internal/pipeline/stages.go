package main

// Where the end-to-end time goes: the pipeline part scrapes the binaries'
// own latency histograms (relay: commit → Kafka ack; projector: commit →
// indexed) before and after each rate, and sets their difference next to
// its measured commit → searchable.

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"sort"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// histo is a cumulative Prometheus histogram (summed over the matching
// series and processes).
type histo struct {
	Bounds []float64 // upper bounds, ascending, +Inf last
	Cum    []float64 // cumulative counts per bound
	Count  float64
	Sum    float64
}

// stageMetric names a histogram of one binary and the label it must carry.
type stageMetric struct {
	Label      string // "relay commit→Kafka ack"
	Metric     string // cqrsflow_relay_publish_lag_seconds
	LabelName  string // "" or a label that must equal LabelValue
	LabelValue string
	Procs      []*proc
}

// scrape reads the metric from every process and adds the series up.
func (m stageMetric) scrape(ctx context.Context, client *http.Client) (histo, error) {
	var total histo
	for _, p := range m.Procs {
		fams, err := scrapeMetrics(ctx, client, "http://"+p.Addr+"/metrics")
		if err != nil {
			return histo{}, fmt.Errorf("%s: %w", p.Name, err)
		}
		total = total.add(histoFrom(fams[m.Metric], m.LabelName, m.LabelValue))
	}
	return total, nil
}

func scrapeMetrics(ctx context.Context, client *http.Client, url string) (map[string]*dto.MetricFamily, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	res, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scraping %s: %w", url, err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scraping %s: %s", url, res.Status)
	}
	return parseMetrics(res.Body)
}

func parseMetrics(r io.Reader) (map[string]*dto.MetricFamily, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(r)
	if err != nil {
		return nil, fmt.Errorf("parsing metrics: %w", err)
	}
	return fams, nil
}

// histoFrom sums the histogram series of fam whose label matches (all
// series when labelName is empty).
func histoFrom(fam *dto.MetricFamily, labelName, labelValue string) histo {
	var h histo
	if fam == nil {
		return h
	}
	for _, m := range fam.GetMetric() {
		if labelName != "" && !hasLabel(m, labelName, labelValue) {
			continue
		}
		ph := m.GetHistogram()
		if ph == nil {
			continue
		}
		one := histo{Count: float64(ph.GetSampleCount()), Sum: ph.GetSampleSum()}
		for _, b := range ph.GetBucket() {
			one.Bounds = append(one.Bounds, b.GetUpperBound())
			one.Cum = append(one.Cum, float64(b.GetCumulativeCount()))
		}
		if n := len(one.Bounds); n == 0 || !math.IsInf(one.Bounds[n-1], 1) {
			one.Bounds = append(one.Bounds, math.Inf(1))
			one.Cum = append(one.Cum, one.Count)
		}
		h = h.add(one)
	}
	return h
}

func hasLabel(m *dto.Metric, name, value string) bool {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue() == value
		}
	}
	return false
}

// add sums two histograms with the same bounds (an empty one takes the
// other's bounds).
func (h histo) add(o histo) histo {
	if len(h.Bounds) == 0 {
		return o.clone()
	}
	if len(o.Bounds) == 0 {
		return h
	}
	out := h.clone()
	for i := range out.Cum {
		if i < len(o.Cum) {
			out.Cum[i] += o.Cum[i]
		}
	}
	out.Count += o.Count
	out.Sum += o.Sum
	return out
}

// sub is h − before: the observations made between two scrapes.
func (h histo) sub(before histo) histo {
	out := h.clone()
	for i := range out.Cum {
		if i < len(before.Cum) {
			out.Cum[i] -= before.Cum[i]
		}
	}
	out.Count -= before.Count
	out.Sum -= before.Sum
	return out
}

func (h histo) clone() histo {
	return histo{Bounds: append([]float64(nil), h.Bounds...), Cum: append([]float64(nil), h.Cum...), Count: h.Count, Sum: h.Sum}
}

// mean is the exact average observation, in seconds.
func (h histo) mean() float64 {
	if h.Count <= 0 {
		return math.NaN()
	}
	return h.Sum / h.Count
}

// quantile estimates the q-quantile like PromQL's histogram_quantile:
// linear interpolation inside the bucket that holds it; the +Inf bucket
// answers with the highest finite bound.
func (h histo) quantile(q float64) float64 {
	if h.Count <= 0 || len(h.Bounds) == 0 {
		return math.NaN()
	}
	rank := q * h.Count
	i := sort.Search(len(h.Cum), func(i int) bool { return h.Cum[i] >= rank })
	if i >= len(h.Bounds) {
		i = len(h.Bounds) - 1
	}
	if math.IsInf(h.Bounds[i], 1) {
		if i == 0 {
			return math.NaN()
		}
		return h.Bounds[i-1]
	}
	lo, below := 0.0, 0.0
	if i > 0 {
		lo, below = h.Bounds[i-1], h.Cum[i-1]
	}
	in := h.Cum[i] - below
	if in <= 0 {
		return h.Bounds[i]
	}
	return lo + (h.Bounds[i]-lo)*(rank-below)/in
}

// stageStat is one stage's latency over one rate.
type stageStat struct {
	Label string
	N     float64
	Mean  time.Duration
	P50   time.Duration // estimated from buckets
	P99   time.Duration // estimated from buckets
	Err   error
}

func secs(v float64) time.Duration {
	if math.IsNaN(v) {
		return 0
	}
	return time.Duration(v * float64(time.Second))
}

func stageFrom(label string, d histo) stageStat {
	return stageStat{Label: label, N: d.Count, Mean: secs(d.mean()), P50: secs(d.quantile(0.5)), P99: secs(d.quantile(0.99))}
}
