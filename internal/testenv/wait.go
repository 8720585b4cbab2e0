package testenv

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// permanent marks a condition error that ends a wait at once.
type permanent struct{ err error }

func (p permanent) Error() string { return p.err.Error() }
func (p permanent) Unwrap() error { return p.err }

// Permanent wraps err so that Until returns it at once instead of waiting
// on (a process that exited will not become ready).
func Permanent(err error) error { return permanent{err} }

// Until calls cond every interval until it reports true, and fails after
// timeout or when ctx ends. An error from cond is transient — the reason
// the wait is not over yet, named in the timeout error — unless it is
// wrapped with Permanent, which ends the wait with that error.
func Until(ctx context.Context, timeout, interval time.Duration, what string, cond func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		done, err := cond()
		if done {
			return nil
		}
		var p permanent
		if errors.As(err, &p) {
			return p.err
		}
		// A check that would start after the deadline is not made: it
		// could only fail for lack of time and hide the reason this one
		// gave. The wait still lasts until the deadline.
		last := time.Until(deadline) < interval
		next := t.C
		if last {
			next = time.After(time.Until(deadline))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		case <-next:
		}
		// A tick delivered late (a loaded machine) may already be past
		// the deadline: no check starts then either.
		if !last && time.Now().Before(deadline) {
			continue
		}
		if err != nil {
			return fmt.Errorf("timed out after %s waiting for %s: %w", timeout, what, err)
		}
		return fmt.Errorf("timed out after %s waiting for %s", timeout, what)
	}
}
