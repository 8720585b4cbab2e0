package write

import (
	"errors"
	"testing"
	"time"

	"cqrsflow/bench/internal/cli"
	"cqrsflow/bench/internal/result"
	"cqrsflow/bench/loadgen"
)

func TestParseSettings(t *testing.T) {
	t.Setenv(result.QuickEnv, "1")
	s, err := parseSettings(nil)
	if err != nil {
		t.Fatal(err)
	}
	if s.Duration != 6*time.Second || s.FixedDur != 6*time.Second || s.Clients != 64 || !s.Quick {
		t.Errorf("quick settings = %+v", s)
	}
	for _, args := range [][]string{
		{"-slices", "0"}, {"-clients", "0"}, {"-duration", "0s"},
		{"-products", "0"}, // updates of no product
		{"-update-share", "x"}, {"extra"},
	} {
		var ue cli.UsageError
		if _, err := parseSettings(args); !errors.As(err, &ue) {
			t.Errorf("%v: err = %v, want a usage error", args, err)
		}
	}
	if _, err := parseSettings([]string{"-products", "0", "-update-share", "0"}); err != nil {
		t.Errorf("creates only need no products: %v", err)
	}
}

func TestResultTargets(t *testing.T) {
	m := measurement{
		API: loadgen.Summary{Ops: 600, Throughput: 600, P99: 20 * time.Millisecond}, Raw: loadgen.Summary{Throughput: 1000},
		APICPUTicks: 60, Half: 300,
		Fixed: loadgen.Summary{P99: 40 * time.Millisecond}, RawFixed: loadgen.Summary{P99: 10 * time.Millisecond},
	}
	if us := m.apiCPUus(); us != 1000 {
		t.Errorf("api CPU = %v µs per command, want 0.6 s / 600 = 1000", us)
	}
	res := m.result(settings{Clients: 64}, time.Now())
	if r := res.Rows[0]; r.Ratio != 0.6 || r.Pass == nil || !*r.Pass {
		t.Errorf("throughput row = %+v, want ratio 0.6 passing", r)
	}
	if r := res.Rows[3]; r.Value != 40 || r.Pass == nil || !*r.Pass {
		t.Errorf("open-loop row = %+v, want 40 ms passing", r)
	}
	m.Fixed.Errors = 1
	if r := m.result(settings{}, time.Now()).Rows[3]; *r.Pass {
		t.Error("an open-loop error passed the p99 target")
	}
}
