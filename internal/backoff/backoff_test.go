package backoff

import (
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
