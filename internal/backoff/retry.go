package backoff

import (
	"context"
	"time"
)

// Retry calls f until it returns nil or ctx is done, each call bounded by
// attemptTimeout (0: only by ctx), waiting p's delay between calls.
// onRetry, if set, is told each failure and the wait before the next call;
// a failure that comes with ctx done is not reported. Retry returns nil
// after a success and ctx.Err() otherwise. It has no attempt limit: it is
// for start-up steps a process cannot go on without (migrations, topics),
// which an operator stops by stopping the process.
func Retry(ctx context.Context, p Policy, attemptTimeout time.Duration, f func(context.Context) error, onRetry func(err error, wait time.Duration)) error {
	c := Counter{Policy: p}
	for {
		err := attempt(ctx, attemptTimeout, f)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		d := c.Next()
		if onRetry != nil {
			onRetry(err, d)
		}
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

func attempt(ctx context.Context, timeout time.Duration, f func(context.Context) error) error {
	if timeout <= 0 {
		return f(ctx)
	}
	actx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return f(actx)
}
