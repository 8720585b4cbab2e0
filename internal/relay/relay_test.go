package relay

import (
	"testing"
	"time"
)

func TestBackoffCappedWithJitter(t *testing.T) {
	b := (&Relay{cfg: Config{MaxBackoff: 400 * time.Millisecond}}).backoff()
	for i := range 20 {
		d := b.Next()
		if d > 400*time.Millisecond || d < 25*time.Millisecond {
			t.Fatalf("attempt %d: backoff %s outside [25ms, 400ms]", i, d)
		}
	}
	b.Reset()
	if d := b.Next(); d > 50*time.Millisecond {
		t.Fatalf("after reset: %s", d)
	}
}

func TestZeroConfigTakesTheDefaults(t *testing.T) {
	var c Config
	c.defaults()
	want := DefaultConfig()
	want.Linger = 0 // zero means claim at once
	want.RenewInterval = want.LeaseTTL / 3
	if c.TopicPrefix != want.TopicPrefix || c.BatchSize != want.BatchSize || c.Workers != want.Workers ||
		c.PollInterval != want.PollInterval || c.Linger != want.Linger || c.LeaseTTL != want.LeaseTTL ||
		c.RenewInterval != want.RenewInterval || c.StatsInterval != want.StatsInterval || c.ShutdownGrace != want.ShutdownGrace ||
		c.MaxBackoff != want.MaxBackoff || c.RescanInterval != want.RescanInterval {
		t.Fatalf("zero config became %+v, want %+v", c, want)
	}

	set := Config{BatchSize: 7, LeaseTTL: 3 * time.Second, Linger: time.Millisecond}
	set.defaults()
	if set.BatchSize != 7 || set.LeaseTTL != 3*time.Second || set.RenewInterval != time.Second || set.Linger != time.Millisecond {
		t.Fatalf("set fields changed or RenewInterval not LeaseTTL/3: %+v", set)
	}
}
