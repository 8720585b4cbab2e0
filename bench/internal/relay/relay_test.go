package relay

import (
	"errors"
	"testing"
	"time"

	"cqrsflow/bench/internal/cli"
	"cqrsflow/bench/internal/result"
	"cqrsflow/bench/loadgen"
)

func TestParseSettings(t *testing.T) {
	t.Setenv(result.QuickEnv, "")
	s, err := parseSettings([]string{"-kafka-brokers", "a:1, b:2"})
	if err != nil {
		t.Fatal(err)
	}
	if s.Rows != 200000 || s.LagDuration != 20*time.Second || len(s.Brokers) != 2 || s.Brokers[1] != "b:2" {
		t.Errorf("settings = %+v", s)
	}
	for _, args := range [][]string{{"-rows", "0"}, {"-rate", "-1"}, {"-partitions", "0"}, {"-batch-size", "x"}, {"extra"},
		{"-debug-addr", "0.0.0.0:6060"}, {"-debug-addr", ":6060"}, {"-debug-addr", "127.0.0.1"}, {"-debug-addr", "10.0.0.1:6060"}} {
		var ue cli.UsageError
		if _, err := parseSettings(args); !errors.As(err, &ue) {
			t.Errorf("%v: err = %v, want a usage error", args, err)
		}
	}
}

func TestResultTargets(t *testing.T) {
	d := drainResult{Rows: 1000, Relay: time.Second, Raw: 500 * time.Millisecond}
	var lags []time.Duration
	for i := 1; i <= 100; i++ {
		lags = append(lags, time.Duration(i)*time.Millisecond)
	}
	l := lagResult{Writes: loadgen.Summary{Throughput: 990}, Sorted: lags}
	res := resultOf(settings{Rows: 1000, BatchSize: 10, Workers: 2, Partitions: 3}, time.Now(), outcome{drain: &d, lag: &l})
	if r := res.Rows[0]; r.Value != 1000 || r.BaselineValue != 2000 || r.Pass == nil || !*r.Pass {
		t.Errorf("drain row = %+v, want 1000 vs 2000 events/s, ratio 0.5 passing", r)
	}
	if r := res.Rows[2]; r.Value != 99 || r.Pass == nil || !*r.Pass {
		t.Errorf("p99 row = %+v, want 99 ms passing", r)
	}
	l.Sorted[99] = 150 * time.Millisecond
	l.Sorted[98] = 120 * time.Millisecond
	if r := resultOf(settings{}, time.Now(), outcome{drain: &d, lag: &l}).Rows[2]; *r.Pass {
		t.Errorf("p99 of 120 ms passed: %+v", r)
	}
}

// The steady rows carry the floor of the same rate as their baseline, and
// only of the same rate; the target stays on the relay's own number.
func TestSteadyRowsCarryTheFloor(t *testing.T) {
	step := func(rate, cores float64) steadyStep {
		return steadyStep{Rate: rate, Writes: loadgen.Summary{Ops: int(rate) * 10, Throughput: rate}, Window: 10 * time.Second, Relay: cores / 2, Backends: cores / 2}
	}
	o := outcome{steady: []steadyStep{step(1000, 0.1), step(2000, 0.08)}, floor: []steadyStep{step(1000, 0.04), step(3000, 0.01)}}
	res := resultOf(settings{}, time.Now(), o)
	if len(res.Rows) != 2 {
		t.Fatalf("rows = %+v", res.Rows)
	}
	r := res.Rows[0]
	if r.Value != 100 || r.BaselineValue != 40 || r.Ratio != 2.5 || r.Pass == nil || *r.Pass {
		t.Errorf("1000/s row = %+v, want 100 µs against a floor of 40, failing the 50 µs target", r)
	}
	if r := res.Rows[1]; r.Value != 40 || r.BaselineValue != 0 || r.Pass == nil || !*r.Pass {
		t.Errorf("2000/s row = %+v, want 40 µs passing, with no floor (none measured at 2000/s)", r)
	}
	if s, err := parseSettings(nil); err != nil || !s.Floor {
		t.Errorf("-floor defaults to %v (%v), want on", s.Floor, err)
	}
}
