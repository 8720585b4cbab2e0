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
