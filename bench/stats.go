package main

import (
	"math"
	"slices"
	"time"
)

// latencies is a set of measured durations.
type latencies []time.Duration

// summary is the distribution of a latency set.
type summary struct {
	N    int
	Mean time.Duration
	P50  time.Duration
	P99  time.Duration
	P999 time.Duration
	Max  time.Duration
}

// summarize sorts a copy of l and returns its nearest-rank percentiles.
func (l latencies) summarize() summary {
	if len(l) == 0 {
		return summary{}
	}
	s := slices.Clone(l)
	slices.Sort(s)
	var total time.Duration
	for _, d := range s {
		total += d
	}
	return summary{
		N:    len(s),
		Mean: total / time.Duration(len(s)),
		P50:  rank(s, 0.50),
		P99:  rank(s, 0.99),
		P999: rank(s, 0.999),
		Max:  s[len(s)-1],
	}
}

// rank is the nearest-rank percentile q (0 < q ≤ 1) of sorted s: the
// smallest value with at least q of the values at or below it.
func rank(sorted latencies, q float64) time.Duration {
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	i = max(0, min(i, len(sorted)-1))
	return sorted[i]
}

// ms is d in milliseconds.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
