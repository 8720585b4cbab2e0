// Package backoff is the capped exponential backoff with jitter that every
// retry loop in cqrsflow uses (relay publishing, projector writes).
package backoff

import (
	"context"
	"fmt"
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

// Retry calls fn until it returns nil or ctx ends, waiting p.Delay(attempt)
// between attempts. onRetry, if not nil, sees every failure with the wait
// before the next attempt (for logging). When ctx ends first, Retry
// returns ctx's error joined with fn's last one, so callers can tell a
// shutdown (errors.Is(err, context.Canceled)) and still log the cause.
//
// Retry has no attempt limit: it suits work that must not be dropped
// (the caller bounds it with ctx); an error that can never succeed must be
// handled by fn, not retried.
func Retry(ctx context.Context, p Policy, fn func() error, onRetry func(attempt int, wait time.Duration, err error)) error {
	for attempt := 0; ; attempt++ {
		err := fn()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%w (last error: %w)", ctx.Err(), err)
		}
		d := p.Delay(attempt)
		if onRetry != nil {
			onRetry(attempt, d, err)
		}
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w (last error: %w)", ctx.Err(), err)
		case <-t.C:
		}
	}
}
