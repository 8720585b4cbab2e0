// Package backoff is the capped exponential backoff with jitter that every
// retry loop in cqrsflow uses (relay publishing, projector writes).
package backoff

import (
	"math/rand/v2"
	"time"
)

// Policy doubles the wait from Min on every attempt up to Max, with jitter
// in [d/2, d] so retrying processes do not move in lockstep.
type Policy struct {
	Min, Max time.Duration
}

// Delay is the wait before retry number attempt (0 for the first retry).
func (p Policy) Delay(attempt int) time.Duration {
	d := p.Min
	for i := 0; i < attempt && d < p.Max; i++ {
		d *= 2
	}
	if d > p.Max {
		d = p.Max
	}
	half := d / 2
	if half <= 0 {
		return d
	}
	return half + time.Duration(rand.Int64N(int64(half)+1))
}

// Counter counts consecutive failures for a Policy.
type Counter struct {
	Policy
	n int
}

// Next returns the wait after one more failure.
func (c *Counter) Next() time.Duration {
	d := c.Delay(c.n)
	c.n++
	return d
}

// Reset starts over after a success.
func (c *Counter) Reset() { c.n = 0 }
