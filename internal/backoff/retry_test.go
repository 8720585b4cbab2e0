package backoff

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestRetryUntilSuccessReportingEachFailure(t *testing.T) {
	p := Policy{Min: time.Millisecond, Max: 4 * time.Millisecond}
	calls := 0
	var waits []time.Duration
	err := Retry(context.Background(), p, time.Second, func(context.Context) error {
		calls++
		if calls < 5 {
			return errors.New("not yet")
		}
		return nil
	}, func(err error, d time.Duration) { waits = append(waits, d) })
	if err != nil || calls != 5 || len(waits) != 4 {
		t.Fatalf("err %v after %d calls, %d retries reported", err, calls, len(waits))
	}
	for i, d := range waits {
		if d <= 0 || d > p.Max {
			t.Errorf("wait %d = %s, want in (0, %s]", i, d, p.Max)
		}
	}
}

func TestRetryBoundsEachAttempt(t *testing.T) {
	calls := 0
	err := Retry(context.Background(), Policy{Min: time.Millisecond, Max: time.Millisecond}, 20*time.Millisecond,
		func(ctx context.Context) error {
			calls++
			if calls == 1 {
				<-ctx.Done() // a hung attempt: only its timeout ends it
				return ctx.Err()
			}
			return nil
		}, nil)
	if err != nil || calls != 2 {
		t.Fatalf("err %v after %d calls, want a second attempt after the first timed out", err, calls)
	}
}

func TestRetryStopsWhenTheContextEnds(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	reported := 0
	start := time.Now()
	err := Retry(ctx, Policy{Min: 10 * time.Millisecond, Max: 10 * time.Second}, 0,
		func(context.Context) error { return errors.New("down") },
		func(error, time.Duration) { reported++ })
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want the context's", err)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Fatalf("returned %s after the context ended", el)
	}
	if reported == 0 {
		t.Fatal("no failure reported")
	}
}
