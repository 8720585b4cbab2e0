package backoff

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestDelayCappedAndGrowing(t *testing.T) {
	p := Policy{Min: 100 * time.Millisecond, Max: 2 * time.Second}
	for a := 0; a < 50; a++ {
		d := p.Delay(a)
		if d < 50*time.Millisecond || d > 2*time.Second {
			t.Fatalf("attempt %d: delay %s outside [50ms, 2s]", a, d)
		}
	}
	if p.Delay(10) < time.Second {
		t.Errorf("delay does not grow to the cap")
	}
}

func TestCounterCappedWithJitterAndReset(t *testing.T) {
	c := Counter{Policy: Policy{Min: 50 * time.Millisecond, Max: 400 * time.Millisecond}}
	for i := range 20 {
		d := c.Next()
		if d > 400*time.Millisecond || d < 25*time.Millisecond {
			t.Fatalf("attempt %d: backoff %s outside [25ms, 400ms]", i, d)
		}
	}
	if d := c.Next(); d < 200*time.Millisecond {
		t.Fatalf("after 20 failures: %s, want near the 400ms cap", d)
	}
	c.Reset()
	if d := c.Next(); d > 50*time.Millisecond {
		t.Fatalf("after reset: %s", d)
	}
}

// Retry calls fn again after each failure, with growing waits, until it
// succeeds; the callback sees every failure.
func TestRetryUntilSuccess(t *testing.T) {
	p := Policy{Min: time.Millisecond, Max: 4 * time.Millisecond}
	calls, retries := 0, 0
	boom := errors.New("boom")
	err := Retry(context.Background(), p, func(context.Context) error {
		calls++
		if calls < 4 {
			return boom
		}
		return nil
	}, func(attempt int, wait time.Duration, err error) {
		if attempt != retries || !errors.Is(err, boom) || wait <= 0 || wait > 4*time.Millisecond {
			t.Errorf("onRetry(%d, %s, %v) after %d retries", attempt, wait, err, retries)
		}
		retries++
	})
	if err != nil || calls != 4 || retries != 3 {
		t.Fatalf("err %v, %d calls, %d retries; want nil, 4, 3", err, calls, retries)
	}
}

// A context that ends stops the retries; the error is the context's,
// joined with the last failure.
func TestRetryStopsWithContext(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	boom := errors.New("boom")
	start := time.Now()
	err := Retry(ctx, Policy{Min: time.Millisecond, Max: 5 * time.Millisecond}, func(context.Context) error { return boom }, nil)
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, boom) {
		t.Fatalf("err = %v, want deadline exceeded and boom", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("Retry returned %s after the context ended", d)
	}
}

// A Permanent error stops the retries at once and stays recognisable.
func TestRetryStopsOnPermanent(t *testing.T) {
	calls := 0
	boom := errors.New("no such topic")
	err := Retry(context.Background(), Policy{Min: time.Millisecond, Max: 4 * time.Millisecond},
		func(context.Context) error { calls++; return Permanent(boom) }, func(int, time.Duration, error) { t.Error("retried a permanent error") })
	if !errors.Is(err, boom) || !IsPermanent(err) || calls != 1 {
		t.Fatalf("permanent: err %v after %d calls; want it at once", err, calls)
	}
	if IsPermanent(nil) || Permanent(nil) != nil || IsPermanent(boom) {
		t.Fatal("only errors marked Permanent are permanent")
	}
}

func TestRetryStartup(t *testing.T) {
	var logged bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logged, nil))
	calls := 0
	err := RetryStartup(context.Background(), log, "ensuring topics", func(ctx context.Context) error {
		calls++
		dl, ok := ctx.Deadline()
		if !ok || time.Until(dl) > StartupAttempt {
			t.Errorf("attempt %d: deadline %v (set: %v), want one within %s", calls, dl, ok, StartupAttempt)
		}
		if calls == 1 {
			return errors.New("broker not reachable")
		}
		return nil
	}, "projection", "products")
	if err != nil || calls != 2 {
		t.Fatalf("err %v after %d calls, want nil after 2", err, calls)
	}
	for _, want := range []string{`msg="ensuring topics failed; retrying"`, "projection=products", `err="broker not reachable"`, "backoff="} {
		if !strings.Contains(logged.String(), want) {
			t.Errorf("log %q lacks %q", logged.String(), want)
		}
	}

	calls = 0
	refused := errors.New("mapping conflict")
	err = RetryStartup(context.Background(), log, "preparing the read model", func(context.Context) error {
		calls++
		return Permanent(refused)
	})
	if !errors.Is(err, refused) || calls != 1 {
		t.Fatalf("permanent: err %v after %d calls, want the refusal after 1", err, calls)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err = RetryStartup(ctx, log, "applying migrations", func(context.Context) error { return errors.New("down") })
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: err %v, want context.Canceled", err)
	}
}
