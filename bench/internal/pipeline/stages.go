package pipeline

// Where the end-to-end time goes: the pipeline part scrapes the binaries'
// own latency histograms (relay: commit → Kafka ack; projector: commit →
// indexed) before and after each rate, and sets their difference next to
// its measured commit → searchable.

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"time"

	"cqrsflow/bench/internal/stats"
	"cqrsflow/internal/testenv/binary"
)

// stageMetric names a histogram of one binary and the label it must carry.
type stageMetric struct {
	Label      string // "relay commit→Kafka ack"
	Metric     string // cqrsflow_relay_publish_lag_seconds
	LabelName  string // "" or a label that must equal LabelValue
	LabelValue string
	Procs      []*binary.Process
}

// scrape reads the metric from every process and adds the series up.
func (m stageMetric) scrape(ctx context.Context, client *http.Client) (stats.Histogram, error) {
	var total stats.Histogram
	for _, p := range m.Procs {
		fams, err := stats.Scrape(ctx, client, "http://"+p.Addr+"/metrics")
		if err != nil {
			return stats.Histogram{}, fmt.Errorf("%s: %w", p.Name, err)
		}
		total = total.Add(stats.HistogramFrom(fams[m.Metric], m.LabelName, m.LabelValue))
	}
	return total, nil
}

type scraped struct {
	h   stats.Histogram
	err error
}

// scrapeStages reads every stage histogram now.
func (pl *pipeline) scrapeStages(ctx context.Context) []scraped {
	out := make([]scraped, len(pl.stages))
	for i, m := range pl.stages {
		out[i].h, out[i].err = m.scrape(ctx, http.DefaultClient)
	}
	return out
}

// stageDeltas is each stage's latency between two scrapes.
func (pl *pipeline) stageDeltas(before, after []scraped) []stageStat {
	var out []stageStat
	for i, m := range pl.stages {
		if before[i].err != nil || after[i].err != nil {
			out = append(out, stageStat{Label: m.Label, Err: errors.Join(before[i].err, after[i].err)})
			continue
		}
		out = append(out, stageFrom(m.Label, after[i].h.Sub(before[i].h)))
	}
	return out
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

func stageFrom(label string, d stats.Histogram) stageStat {
	return stageStat{Label: label, N: d.Count, Mean: secs(d.Mean()), P50: secs(d.Quantile(0.5)), P99: secs(d.Quantile(0.99))}
}
