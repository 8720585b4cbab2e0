package pipeline

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"cqrsflow/bench/internal/procs"
	"cqrsflow/bench/internal/result"
	"cqrsflow/bench/internal/stats"
)

func TestJudge(t *testing.T) {
	ok := stepResult{Planned: 1000, Samples: 100, Full: stats.Summary{N: 100, P99: time.Second}}
	if pass, why := judge(ok, 2*time.Second); !pass || why != "sustained" {
		t.Errorf("healthy step: %v %q", pass, why)
	}
	cases := map[string]stepResult{
		"failed or unsent":    {Planned: 1000, Errors: 6, Unsent: 5, Samples: 100, Full: stats.Summary{N: 100, P99: time.Second}},
		"not searchable":      {Planned: 1000, Samples: 100, Missing: 1, Full: stats.Summary{N: 99, P99: time.Second}},
		"p99 send→searchable": {Planned: 1000, Samples: 100, Full: stats.Summary{N: 100, P99: 2 * time.Second}},
		"no sampled write":    {Planned: 1000},
	}
	for want, st := range cases {
		if pass, why := judge(st, 2*time.Second); pass || !strings.Contains(why, want) {
			t.Errorf("judge(%+v) = %v %q, want a failure mentioning %q", st, pass, why, want)
		}
	}
	// 1% errors is still fine.
	edge := ok
	edge.Errors = 10
	if pass, _ := judge(edge, 2*time.Second); !pass {
		t.Error("exactly 1% failed writes: want sustained")
	}
}

func TestParsePipelineConfig(t *testing.T) {
	t.Setenv(result.QuickEnv, "")
	cfg, err := parsePipelineConfig([]string{"-rates", "1000, 250,1000"})
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Rates) != 2 || cfg.Rates[0] != 250 || cfg.Rates[1] != 1000 {
		t.Errorf("rates = %v, want [250 1000] sorted and deduplicated", cfg.Rates)
	}
	t.Setenv(result.QuickEnv, "1")
	cfg, err = parsePipelineConfig(nil)
	if err != nil || !cfg.Quick || cfg.StepDuration != 8*time.Second || cfg.Probes != 0 {
		t.Errorf("quick defaults = %+v, %v", cfg, err)
	}
	_, err = parsePipelineConfig([]string{"-rates", "x,-5", "-projectors", "0", "-probes", "99", "-env", "NOEQUALS"})
	if err == nil {
		t.Fatal("bad flags accepted")
	}
	_, err = parsePipelineConfig([]string{"-rates", "x,-5", "-projectors", "0", "-probes", "99"})
	for _, want := range []string{"-rates", "-projectors", "-probes"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not name %s", err, want)
		}
	}
}

func TestParseHitVersions(t *testing.T) {
	got, err := parseHitVersions(strings.NewReader(`{"hits":{"hits":[{"_id":"a","_version":3},{"_id":"b","_version":1}]}}`))
	if err != nil || len(got) != 2 || got["a"] != 3 || got["b"] != 1 {
		t.Errorf("parseHitVersions = %v, %v", got, err)
	}
	// filter_path turns an empty result into {}.
	if got, err := parseHitVersions(strings.NewReader(`{}`)); err != nil || len(got) != 0 {
		t.Errorf("empty = %v, %v", got, err)
	}
	if _, err := parseHitVersions(strings.NewReader(`<html>`)); err == nil {
		t.Error("garbage: want an error")
	}
}

func TestPipelineResult(t *testing.T) {
	cfg := pipelineConfig{SLO: 2 * time.Second, StepDuration: 10 * time.Second, Projectors: 1, MaxInFlight: 64, SamplesPerSec: 200, PollInterval: 50 * time.Millisecond}
	pl := &pipeline{alias: "bench-x-products", poller: newVisPoller("http://127.0.0.1:1", "a", time.Second)}
	steps := []stepResult{
		{Offered: 1000, Achieved: 998, Planned: 10000, OK: 10000, Samples: 100, Pass: true, Why: "sustained",
			API:  stats.Summary{N: 10000, P50: 5 * time.Millisecond, P99: 40 * time.Millisecond},
			E2E:  stats.Summary{N: 100, P50: 800 * time.Millisecond, P99: 1300 * time.Millisecond, Max: 1500 * time.Millisecond},
			Full: stats.Summary{N: 100, P99: 1350 * time.Millisecond}, Cores: map[string]float64{"api": 0.5, "postgresql": 0.3}},
		{Offered: 250, Achieved: 250, Planned: 2500, OK: 2500, Samples: 50, Pass: true, Why: "sustained",
			API: stats.Summary{N: 2500, P99: 10 * time.Millisecond}, E2E: stats.Summary{N: 50, P50: 700 * time.Millisecond, P99: 1100 * time.Millisecond, Max: 1200 * time.Millisecond},
			Cores: map[string]float64{"api": 0.1, "postgresql": 0.1}},
		{Offered: 2000, Achieved: 1500, Planned: 20000, OK: 19000, Errors: 1000, ErrKinds: map[string]int{"http 503": 1000}, Samples: 100, Missing: 100, Why: "lost",
			Cores: map[string]float64{"api": 1.2, "postgresql": 0.7}},
	}
	res := pipelineResult(cfg, time.Now(), steps, 1000, []procMem{{Name: "api", Mem: procs.Mem{HWMKiB: 40 << 10}}}, pl)
	rows := map[string]result.Row{}
	for _, r := range res.Rows {
		rows[r.Name] = r
	}
	if r := rows["e2e commit→searchable p99 @ 1000 writes/s"]; r.Value != 1300 || r.Pass == nil || !*r.Pass {
		t.Errorf("1000 w/s row = %+v", r)
	}
	if r := rows["e2e commit→searchable p99 @ 2000 writes/s"]; r.Pass == nil || *r.Pass {
		t.Errorf("2000 w/s row (nothing searchable) = %+v, want failed", r)
	}
	if r := rows["highest rate with p99 send→searchable < 2s"]; r.Value != 1000 || r.Unit != "writes/s" {
		t.Errorf("max rate row = %+v", r)
	}
	if r := rows["peak RSS api"]; r.Value != 40 || r.Unit != "MiB" {
		t.Errorf("memory row = %+v", r)
	}
	s, ok := seriesNamed(res, "latency_vs_rate/e2e p99")
	if !ok || len(s.Points) != 2 || s.Points[0].X != 250 || s.Points[1].Y != 1300 {
		t.Errorf("e2e p99 series = %+v (want 250 and 1000 only, sorted)", s)
	}
	if len(res.Tables) != 3 || len(res.Tables[0].Rows) != 3 || !strings.Contains(res.Tables[0].Rows[2][9], "http 503×1000") {
		t.Errorf("tables = %+v", res.Tables)
	}
	if cpu := res.Tables[1]; cpu.Columns[1] != "api" || cpu.Rows[0][0] != "250" {
		t.Errorf("cpu table = %+v", cpu)
	}
	t.Setenv(result.DirEnv, t.TempDir())
	if _, err := result.Save(res); err != nil {
		t.Errorf("the pipeline result does not save: %v", err)
	}
}

func seriesNamed(r result.Result, name string) (result.Series, bool) {
	for _, s := range r.Series {
		if s.Name == name {
			return s, true
		}
	}
	return result.Series{}, false
}

func TestNoWriteSucceeded(t *testing.T) {
	failed := []stepResult{{ErrKinds: map[string]int{"http 404": 3}}, {ErrKinds: map[string]int{"http 404": 2, "timeout": 1}}}
	err := noWriteSucceeded(failed)
	if err == nil || !strings.Contains(err.Error(), "http 404×5, timeout×1") {
		t.Errorf("err = %v", err)
	}
	if err := noWriteSucceeded(append(failed, stepResult{OK: 1})); err != nil {
		t.Errorf("one rate with writes: err = %v", err)
	}
}

func runPlan(p *ratePlan, outcome func(rate float64) (pass, overloaded bool)) (rates []float64, skipped []string) {
	for range 50 {
		r, sk, ok := p.nextRate()
		skipped = append(skipped, sk...)
		if !ok {
			return rates, skipped
		}
		rates = append(rates, r)
		pass, over := outcome(r)
		p.record(r, pass, over)
	}
	panic("plan did not end")
}

func TestRatePlan(t *testing.T) {
	fixed := []float64{250, 500, 1000, 2000}
	// Capacity 700 writes/s: 1000 is overloaded, 2000 skipped, then bisect
	// 500..1000 → 750 (fails, not overloaded) → 650 (passes).
	rates, skipped := runPlan(newRatePlan(fixed, 2, 2), func(r float64) (bool, bool) { return r <= 700, r >= 1000 })
	if got := fmt.Sprint(rates); got != "[250 500 1000 750 650]" {
		t.Errorf("capacity 700: rates %s", got)
	}
	if len(skipped) != 1 || !strings.Contains(skipped[0], "2000") {
		t.Errorf("skipped %q, want 2000", skipped)
	}
	// Everything passes: probes ×1.5 above the fixed rates, bounded.
	rates, _ = runPlan(newRatePlan(fixed, 2, 2), func(float64) (bool, bool) { return true, false })
	if got := fmt.Sprint(rates); got != "[250 500 1000 2000 3000 4500]" {
		t.Errorf("all pass: rates %s", got)
	}
	// A latency-only failure does not skip higher fixed rates; a probe that
	// fails is bisected against.
	p := newRatePlan(fixed, 1, 1)
	rates, _ = runPlan(p, func(r float64) (bool, bool) { return r != 500 && r < 3000, false })
	if got := fmt.Sprint(rates); got != "[250 500 1000 2000 3000 2500]" || p.best() != 2500 {
		t.Errorf("noisy 500: rates %s best %v", got, p.best())
	}
	// Nothing passes: no probe; bisect below the lowest rate.
	p = newRatePlan([]float64{250}, 3, 2)
	rates, _ = runPlan(p, func(float64) (bool, bool) { return false, true })
	if got := fmt.Sprint(rates); got != "[250 150 100]" || p.best() != 0 {
		t.Errorf("nothing passes: rates %s best %v", got, p.best())
	}
}

func TestStepOverloaded(t *testing.T) {
	ok := stepResult{Offered: 1000, Achieved: 990, Planned: 10000}
	if ok.overloaded() {
		t.Error("99% carried counted as overloaded")
	}
	if (stepResult{Offered: 1000, Achieved: 800, Planned: 10000}).overloaded() == false {
		t.Error("80% carried not overloaded")
	}
	if (stepResult{Offered: 1000, Achieved: 1000, Planned: 10000, Unsent: 2000}).overloaded() == false {
		t.Error("20% unsent not overloaded")
	}
}

func TestFindings(t *testing.T) {
	steps := []stepResult{
		{Offered: 500, Achieved: 500, Planned: 5000, Cores: map[string]float64{"api": 0.2, "kafka": 0.1, procs.OtherCPU: 0.05}},
		{Offered: 1000, Achieved: 1000, Planned: 10000, E2E: stats.Summary{N: 10, Mean: 1500 * time.Millisecond},
			Stages: []stageStat{{N: 10, Mean: 50 * time.Millisecond}, {N: 10, Mean: 450 * time.Millisecond}},
			Cores:  map[string]float64{"api": 0.5, "pg backends of api": 0.4, "kafka": 0.1, procs.OtherCPU: 0.3, loadGenerator: 0.45}},
		{Offered: 2000, Achieved: 1200, Planned: 20000, Cores: map[string]float64{"api": 0.9}},
	}
	got := strings.Join(findings(steps), "\n")
	for _, want := range []string{
		"CPU at 1000 writes/s (the highest rate carried; none was sustained): the pipeline and its stack used 1.00 cores, 1.00 ms of CPU per write; the largest shares: api 0.50, pg backends of api 0.40, kafka 0.10; the load generator (not counted) 0.45 cores.",
		"commit → Kafka ack 50.0 ms, Kafka ack → indexed 400 ms, indexed → searchable (refresh wait and polling) 1050 ms, of a measured commit → searchable of 1500 ms.",
		"up to 0.30 cores",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("findings lack %q:\n%s", want, got)
		}
	}
	steps[0].Pass = true
	if got := strings.Join(findings(steps), "\n"); !strings.Contains(got, "CPU at 500 writes/s (the highest sustained rate)") {
		t.Errorf("with a sustained rate: %s", got)
	}
	if f := findings([]stepResult{{Offered: 100, Planned: 100}}); f != nil {
		t.Errorf("nothing carried: %v", f)
	}
}

// The pipeline's CPU per write counts the pipeline and its stack, not the
// load generator (the clients) nor the machine's other processes; both
// still have their columns.
func TestCPUTableLeavesTheLoadGeneratorOut(t *testing.T) {
	tab := cpuTable([]stepResult{{Offered: 1000, Achieved: 1000,
		Cores: map[string]float64{"api": 0.5, "kafka": 0.25, loadGenerator: 0.2, procs.OtherCPU: 0.1}}})
	row := map[string]string{}
	for i, c := range tab.Columns {
		row[c] = tab.Rows[0][i]
	}
	if row[loadGenerator] != "0.20" || row[procs.OtherCPU] != "0.10" {
		t.Errorf("columns lost: %v", row)
	}
	if row["pipeline total (without the load generator)"] != "0.75" || row["pipeline CPU ms per write"] != "0.75" {
		t.Errorf("total = %v, want 0.75 cores and 0.75 ms per write", row)
	}
}
