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
	var c closed
	c.Sum[sideAPI] = loadgen.Summary{Ops: 1000, Throughput: 1000, P99: 20 * time.Millisecond}
	c.Sum[sideAPISingle] = loadgen.Summary{Ops: 600, Throughput: 600}
	c.Sum[sideRaw] = loadgen.Summary{Ops: 1000, Throughput: 1000}
	c.Sum[sideRawBatched] = loadgen.Summary{Ops: 2000, Throughput: 2000}
	c.CPUTicks[sideAPI] = 100
	m := measurement{Closed: c, Half: 500,
		Fixed: loadgen.Summary{P99: 40 * time.Millisecond}, RawFixed: loadgen.Summary{P99: 20 * time.Millisecond},
	}
	if us := m.apiCPUus(sideAPI); us != 1000 {
		t.Errorf("api CPU = %v µs per command, want 1 s / 1000 = 1000", us)
	}
	if us := m.apiCPUus(sideRaw); us != 0 {
		t.Errorf("in-process side has api CPU %v", us)
	}
	res := m.result(settings{Clients: 64}, time.Now())
	if r := res.Rows[0]; r.Ratio != 1 || r.Pass == nil || !*r.Pass {
		t.Errorf("throughput row = %+v, want ratio 1.0 passing", r)
	}
	if r := res.Rows[1]; r.Ratio != 0.5 || r.Pass != nil {
		t.Errorf("ceiling row = %+v, want ratio 0.5 without a target", r)
	}
	if r := res.Rows[2]; r.Ratio != 0.6 {
		t.Errorf("GROUP_COMMIT=false row = %+v, want ratio 0.6", r)
	}
	if r := res.Rows[5]; r.Value != 40 || r.Pass == nil || !*r.Pass {
		t.Errorf("open-loop row = %+v, want 40 ms passing (2x raw)", r)
	}
	m.Fixed.P99 = 41 * time.Millisecond
	if r := m.result(settings{}, time.Now()).Rows[5]; *r.Pass {
		t.Error("a p99 above 2x raw passed")
	}
	m.Fixed.P99 = time.Millisecond
	m.Fixed.Errors = 1
	if r := m.result(settings{}, time.Now()).Rows[5]; *r.Pass {
		t.Error("an open-loop error passed the p99 target")
	}
	m.Closed.Sum[sideAPI].Throughput = 999
	if r := m.result(settings{}, time.Now()).Rows[0]; *r.Pass {
		t.Error("api below raw passed the throughput target")
	}

	// CPU per command: 1000 µs fails the 100 µs target; the floor at the
	// same rate is the baseline of the row.
	m.FloorAtMaxCPU = 50
	if r := m.result(settings{}, time.Now()).Rows[6]; r.Value != 1000 || r.BaselineValue != 50 || r.Pass == nil || *r.Pass {
		t.Errorf("CPU row = %+v, want 1000 µs against 50, failing", r)
	}
	m.Closed.CPUTicks[sideAPI] = 10 // 0.1 s / 1000 = 100 µs
	if r := m.result(settings{}, time.Now()).Rows[6]; r.Pass == nil || !*r.Pass {
		t.Errorf("CPU row = %+v, want 100 µs passing", r)
	}
	if us := cpuPerOp(50, 0); us != 0 {
		t.Errorf("CPU per op of no ops = %v", us)
	}
}
