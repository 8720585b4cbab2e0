// Package stats summarizes what the benchmark parts measure: exact
// percentiles of latency samples, and Prometheus histograms read from the
// binaries' /metrics, differenced between two scrapes.
package stats

import (
	"math"
	"slices"
	"time"
)

// Latencies is a set of measured durations.
type Latencies []time.Duration

// Summary is the distribution of a latency set.
type Summary struct {
	N    int
	Mean time.Duration
	P50  time.Duration
	P99  time.Duration
	P999 time.Duration
	Max  time.Duration
}

// Summarize sorts a copy of l and returns its nearest-rank percentiles.
func (l Latencies) Summarize() Summary {
	if len(l) == 0 {
		return Summary{}
	}
	s := slices.Clone(l)
	slices.Sort(s)
	var total time.Duration
	for _, d := range s {
		total += d
	}
	return Summary{
		N:    len(s),
		Mean: total / time.Duration(len(s)),
		P50:  Rank(s, 0.50),
		P99:  Rank(s, 0.99),
		P999: Rank(s, 0.999),
		Max:  s[len(s)-1],
	}
}

// Rank is the nearest-rank percentile q (0 < q ≤ 1) of sorted s: the
// smallest value with at least q of the values at or below it.
func Rank(sorted Latencies, q float64) time.Duration {
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	i = max(0, min(i, len(sorted)-1))
	return sorted[i]
}

// MS is d in milliseconds.
func MS(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
