package testenv

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestUntil(t *testing.T) {
	ctx := context.Background()
	n := 0
	err := Until(ctx, 5*time.Second, time.Millisecond, "third call", func() (bool, error) {
		n++
		return n == 3, errors.New("not yet")
	})
	if err != nil || n != 3 {
		t.Fatalf("Until = %v after %d calls, want nil after 3", err, n)
	}

	// A transient error is named when the wait times out.
	start := time.Now()
	err = Until(ctx, 30*time.Millisecond, 5*time.Millisecond, "never", func() (bool, error) {
		return false, errors.New("still 503")
	})
	if err == nil || !strings.Contains(err.Error(), "waiting for never") || !strings.Contains(err.Error(), "still 503") {
		t.Errorf("timeout error = %v, want the wait and the last reason named", err)
	}
	if d := time.Since(start); d < 30*time.Millisecond || d > 5*time.Second {
		t.Errorf("timed out after %v, want about 30ms", d)
	}

	// No check starts after the deadline (it would fail for lack of time
	// and hide the last real reason), yet the wait lasts the whole timeout.
	start = time.Now()
	var late []time.Duration
	err = Until(ctx, 50*time.Millisecond, 20*time.Millisecond, "never", func() (bool, error) {
		if d := time.Since(start); d > 50*time.Millisecond {
			late = append(late, d)
		}
		return false, nil
	})
	if err == nil || len(late) > 0 || time.Since(start) < 50*time.Millisecond {
		t.Errorf("err = %v, checks after the deadline at %v, waited %v; want a timeout after 50ms and no late check", err, late, time.Since(start))
	}

	// A permanent error ends the wait at once.
	boom := errors.New("process exited")
	calls := 0
	err = Until(ctx, time.Minute, time.Millisecond, "ready", func() (bool, error) {
		calls++
		return false, Permanent(boom)
	})
	if !errors.Is(err, boom) || calls != 1 {
		t.Errorf("permanent: err = %v after %d calls, want boom after 1", err, calls)
	}

	// A cancelled context ends the wait.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	err = Until(cctx, time.Minute, time.Millisecond, "ready", func() (bool, error) { return false, nil })
	if !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: err = %v, want context.Canceled", err)
	}
}

func TestWithParam(t *testing.T) {
	u, err := WithParam("postgres://u:p@127.0.0.1:5432/db?sslmode=disable", "application_name", "bench-1 api")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(u, "application_name=bench-1+api") || !strings.Contains(u, "sslmode=disable") {
		t.Errorf("WithParam = %s, want the parameter added and the others kept", u)
	}
	u, err = WithSearchPath(u, "s1")
	if err != nil || !strings.Contains(u, "search_path=s1") || !strings.Contains(u, "application_name=") {
		t.Errorf("WithSearchPath = %s, %v", u, err)
	}
	if _, err := WithParam("postgres://[::1", "k", "v"); err == nil {
		t.Error("malformed URL: want an error")
	}
}

func TestNameAndRandomHex(t *testing.T) {
	a, b := RandomHex(4), RandomHex(4)
	if len(a) != 8 || strings.Trim(a, "0123456789abcdef") != "" || a == b {
		t.Errorf("RandomHex(4) = %q, %q; want two different 8-digit hex strings", a, b)
	}
	if n := Name(t); !strings.HasPrefix(n, "t_testnameandrandomhex_") || len(n) != len("t_testnameandrandomhex_")+8 {
		t.Errorf("Name = %q", n)
	}
}
