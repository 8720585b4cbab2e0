// Package backoff is the capped exponential backoff with jitter that every
// retry loop in cqrsflow uses (relay publishing, projector writes).
package backoff

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
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

// Sleep waits d or until ctx ends; false when ctx ended.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// permanent marks an error that no retry can fix.
type permanent struct{ err error }

func (p permanent) Error() string { return p.err.Error() }
func (p permanent) Unwrap() error { return p.err }

// Permanent wraps err so that Retry returns it at once instead of retrying.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanent{err}
}

// IsPermanent reports whether err was marked with Permanent.
func IsPermanent(err error) bool {
	var p permanent
	return errors.As(err, &p)
}

// Retry calls fn until it returns nil, returns an error marked Permanent
// (returned at once), or ctx ends, waiting p.Delay(attempt) between
// attempts. onRetry, if not nil, sees every transient failure with the
// wait before the next attempt (for logging). When ctx ends first, Retry
// returns ctx's error joined with fn's last one, so callers can tell a
// shutdown (errors.Is(err, context.Canceled)) and still log the cause.
//
// Retry has no attempt limit: it suits work that must not be dropped (the
// caller bounds it with ctx); an error that can never succeed must be
// classified Permanent by fn, not retried.
func Retry(ctx context.Context, p Policy, fn func(context.Context) error, onRetry func(attempt int, wait time.Duration, err error)) error {
	for attempt := 0; ; attempt++ {
		err := fn(ctx)
		switch {
		case err == nil:
			return nil
		case IsPermanent(err):
			return err
		case ctx.Err() != nil:
			return fmt.Errorf("%w (last error: %w)", ctx.Err(), err)
		}
		d := p.Delay(attempt)
		if onRetry != nil {
			onRetry(attempt, d, err)
		}
		if !Sleep(ctx, d) {
			return fmt.Errorf("%w (last error: %w)", ctx.Err(), err)
		}
	}
}

// Startup paces a binary's start-up steps (migrations, topics, read
// models) while a dependency is still coming up; StartupAttempt bounds
// each attempt.
var Startup = Policy{Min: 200 * time.Millisecond, Max: 10 * time.Second}

// StartupAttempt bounds one attempt of a start-up step.
const StartupAttempt = 30 * time.Second

// RetryStartup is Retry of a start-up step (what, for the log) with the
// Startup policy, each call of fn bounded by StartupAttempt, and every
// transient failure logged at warn with attrs. As Retry, it returns a
// Permanent error at once and ctx's error when ctx ends first.
func RetryStartup(ctx context.Context, log *slog.Logger, what string, fn func(context.Context) error, attrs ...any) error {
	return Retry(ctx, Startup, func(ctx context.Context) error {
		actx, cancel := context.WithTimeout(ctx, StartupAttempt)
		defer cancel()
		return fn(actx)
	}, func(_ int, wait time.Duration, err error) {
		log.Warn(what+" failed; retrying", append(attrs[:len(attrs):len(attrs)], "err", err, "backoff", wait.String())...)
	})
}
