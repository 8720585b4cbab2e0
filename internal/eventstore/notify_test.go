package eventstore

import (
	"testing"
	"time"
)

func TestNotifyIntervalIsBounded(t *testing.T) {
	for _, c := range []struct{ in, want time.Duration }{
		{-time.Second, 0}, {0, 0}, {time.Millisecond, time.Millisecond},
		{DefaultNotifyInterval, DefaultNotifyInterval}, {time.Hour, MaxNotifyInterval},
	} {
		n := startNotifier(nil, "unused", c.in) // no round is sent: nothing pending
		if n.every != c.want {
			t.Errorf("interval %v: %v, want %v", c.in, n.every, c.want)
		}
		n.close()
	}
}
