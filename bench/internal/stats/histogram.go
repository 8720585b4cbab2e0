package stats

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

// Histogram is a cumulative Prometheus histogram (summed over the matching
// series and processes).
type Histogram struct {
	Bounds []float64 // upper bounds, ascending, +Inf last
	Cum    []float64 // cumulative counts per bound
	Count  float64
	Sum    float64
}

// ParseMetrics reads the Prometheus text exposition format.
func ParseMetrics(r io.Reader) (map[string]*dto.MetricFamily, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(r)
	if err != nil {
		return nil, fmt.Errorf("parsing metrics: %w", err)
	}
	return fams, nil
}

// Scrape reads the metrics a binary serves at url (its /metrics).
func Scrape(ctx context.Context, client *http.Client, url string) (map[string]*dto.MetricFamily, error) {
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
	return ParseMetrics(res.Body)
}

// HistogramFrom sums the histogram series of fam whose label matches (all
// series when labelName is empty).
func HistogramFrom(fam *dto.MetricFamily, labelName, labelValue string) Histogram {
	var h Histogram
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
		one := Histogram{Count: float64(ph.GetSampleCount()), Sum: ph.GetSampleSum()}
		for _, b := range ph.GetBucket() {
			one.Bounds = append(one.Bounds, b.GetUpperBound())
			one.Cum = append(one.Cum, float64(b.GetCumulativeCount()))
		}
		if n := len(one.Bounds); n == 0 || !math.IsInf(one.Bounds[n-1], 1) {
			one.Bounds = append(one.Bounds, math.Inf(1))
			one.Cum = append(one.Cum, one.Count)
		}
		h = h.Add(one)
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

// Add sums two histograms with the same bounds (an empty one takes the
// other's bounds).
func (h Histogram) Add(o Histogram) Histogram {
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

// Sub is h − before: the observations made between two scrapes.
func (h Histogram) Sub(before Histogram) Histogram {
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

func (h Histogram) clone() Histogram {
	return Histogram{Bounds: append([]float64(nil), h.Bounds...), Cum: append([]float64(nil), h.Cum...), Count: h.Count, Sum: h.Sum}
}

// Mean is the exact average observation, in seconds (NaN when empty).
func (h Histogram) Mean() float64 {
	if h.Count <= 0 {
		return math.NaN()
	}
	return h.Sum / h.Count
}

// Quantile estimates the q-quantile like PromQL's histogram_quantile:
// linear interpolation inside the bucket that holds it; the +Inf bucket
// answers with the highest finite bound (NaN when empty).
func (h Histogram) Quantile(q float64) float64 {
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
