package stats

import (
	"math"
	"strings"
	"testing"
)

const metricsText = `# HELP cqrsflow_projector_end_to_end_seconds commit to indexed
# TYPE cqrsflow_projector_end_to_end_seconds histogram
cqrsflow_projector_end_to_end_seconds_bucket{projection="products",le="0.1"} 10
cqrsflow_projector_end_to_end_seconds_bucket{projection="products",le="0.5"} 90
cqrsflow_projector_end_to_end_seconds_bucket{projection="products",le="1"} 100
cqrsflow_projector_end_to_end_seconds_bucket{projection="products",le="+Inf"} 100
cqrsflow_projector_end_to_end_seconds_sum{projection="products"} 30
cqrsflow_projector_end_to_end_seconds_count{projection="products"} 100
cqrsflow_projector_end_to_end_seconds_bucket{projection="orders",le="0.1"} 5
cqrsflow_projector_end_to_end_seconds_bucket{projection="orders",le="0.5"} 5
cqrsflow_projector_end_to_end_seconds_bucket{projection="orders",le="1"} 5
cqrsflow_projector_end_to_end_seconds_bucket{projection="orders",le="+Inf"} 5
cqrsflow_projector_end_to_end_seconds_sum{projection="orders"} 0.2
cqrsflow_projector_end_to_end_seconds_count{projection="orders"} 5
`

func TestHistogramFromMetricsText(t *testing.T) {
	fams, err := ParseMetrics(strings.NewReader(metricsText))
	if err != nil {
		t.Fatal(err)
	}
	fam := fams["cqrsflow_projector_end_to_end_seconds"]
	h := HistogramFrom(fam, "projection", "products")
	if h.Count != 100 || h.Sum != 30 || len(h.Bounds) != 4 || !math.IsInf(h.Bounds[3], 1) {
		t.Fatalf("products histogram = %+v", h)
	}
	if all := HistogramFrom(fam, "", ""); all.Count != 105 || all.Cum[0] != 15 {
		t.Errorf("all series = %+v, want counts added", all)
	}
	if none := HistogramFrom(nil, "", ""); none.Count != 0 {
		t.Errorf("missing family = %+v", none)
	}
	if _, err := ParseMetrics(strings.NewReader("not a metric line {")); err == nil {
		t.Error("garbage metrics: want an error")
	}

	if m := h.Mean(); m != 0.3 {
		t.Errorf("mean = %v, want 0.3", m)
	}
	// p50: rank 50 lies in (0.1, 0.5] holding 80 (10 below): 0.1 + 0.4*40/80.
	if q := h.Quantile(0.5); math.Abs(q-0.3) > 1e-9 {
		t.Errorf("p50 = %v, want 0.3", q)
	}
	// p99: rank 99 in (0.5, 1] holding 10 (90 below): 0.5 + 0.5*9/10.
	if q := h.Quantile(0.99); math.Abs(q-0.95) > 1e-9 {
		t.Errorf("p99 = %v, want 0.95", q)
	}
}

func TestHistogramSubAndInf(t *testing.T) {
	inf := math.Inf(1)
	before := Histogram{Bounds: []float64{1, 2, inf}, Cum: []float64{10, 10, 10}, Count: 10, Sum: 5}
	after := Histogram{Bounds: []float64{1, 2, inf}, Cum: []float64{10, 10, 30}, Count: 30, Sum: 105}
	d := after.Sub(before)
	if d.Count != 20 || d.Sum != 100 || d.Cum[0] != 0 || d.Cum[2] != 20 {
		t.Fatalf("Sub = %+v", d)
	}
	// Everything in +Inf: the answer is the highest finite bound.
	if q := d.Quantile(0.99); q != 2 {
		t.Errorf("quantile in +Inf bucket = %v, want 2", q)
	}
	if before.Cum[2] != 10 {
		t.Error("Sub changed its argument")
	}
	empty := Histogram{}
	if !math.IsNaN(empty.Quantile(0.5)) || !math.IsNaN(empty.Mean()) {
		t.Error("empty histogram: want NaN")
	}
}
