package backoff

import (
	"context"
	"errors"
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

func TestRetryStopsOnSuccessPermanentAndCancel(t *testing.T) {
	p := Policy{Min: time.Millisecond, Max: 4 * time.Millisecond}
	calls, failures := 0, 0
	err := Retry(context.Background(), p, time.Second, func(ctx context.Context) error {
		calls++
		if _, ok := ctx.Deadline(); !ok {
			t.Error("attempt context has no deadline")
		}
		if calls < 3 {
			return errors.New("transient")
		}
		return nil
	}, func(error, time.Duration) { failures++ })
	if err != nil || calls != 3 || failures != 2 {
		t.Fatalf("transient then success: err %v, %d calls, %d failures reported; want nil, 3, 2", err, calls, failures)
	}

	calls = 0
	boom := errors.New("no such topic")
	err = Retry(context.Background(), p, 0, func(context.Context) error { calls++; return Permanent(boom) }, nil)
	if !errors.Is(err, boom) || !IsPermanent(err) || calls != 1 {
		t.Fatalf("permanent: err %v after %d calls; want it at once", err, calls)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	err = Retry(ctx, p, 0, func(context.Context) error { return errors.New("down") }, nil)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("cancelled: %v, want the context's error", err)
	}
	if IsPermanent(nil) || Permanent(nil) != nil {
		t.Fatal("nil is not permanent")
	}
}
