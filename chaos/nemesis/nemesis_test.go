package nemesis

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"cqrsflow/chaos/history"
)

var topo = Topology{
	Binaries: []string{"api", "relay-1", "projector-1", "projector-2"},
	Services: []string{"postgres", "kafka", "elasticsearch"},
	Links:    []string{"api->postgres", "relay-1->kafka", "projector-1->elasticsearch"},
	Backends: []string{"api", "relay-1"},
}

// A seed is a schedule: the same arguments give the same steps, another
// seed gives others.
func TestPlanIsReproducible(t *testing.T) {
	a := Plan(42, 10*time.Minute, topo, 2)
	b := Plan(42, 10*time.Minute, topo, 2)
	if !reflect.DeepEqual(a, b) {
		t.Fatal("same seed, different schedules")
	}
	if c := Plan(43, 10*time.Minute, topo, 2); reflect.DeepEqual(a, c) {
		t.Fatal("seeds 42 and 43 gave the same schedule")
	}
	if len(a) < 50 {
		t.Fatalf("only %d faults in 10 minutes", len(a))
	}
}

// Every kind comes up, within the window, with a valid target; at most
// maxActive faults overlap and never two on one resource.
func TestPlanRespectsItsBounds(t *testing.T) {
	for _, maxActive := range []int{1, 2, 3} {
		window := 5 * time.Minute
		steps := Plan(7, window, topo, maxActive)
		seen := map[string]bool{}
		for i, s := range steps {
			seen[s.Kind] = true
			if s.At < 0 || s.At >= window || s.At+s.Hold > window {
				t.Errorf("step %d (%s) outside the window: at %s hold %s", i, s, s.At, s.Hold)
			}
			if !slices.Contains(targets(s.Kind, topo), s.Target) {
				t.Errorf("step %s: target not in the topology", s)
			}
			if i > 0 && s.At < steps[i-1].At {
				t.Errorf("steps out of order at %d", i)
			}
			active := 0
			for _, o := range steps[:i] {
				if o.At <= s.At && s.At < o.At+o.Hold+recovery[o.Kind] {
					active++
					if o.Resource() == s.Resource() {
						t.Errorf("%s starts while %s holds %s", s, o, s.Resource())
					}
				}
			}
			if active >= maxActive {
				t.Errorf("maxActive %d: %s starts with %d faults active", maxActive, s, active)
			}
		}
		for _, k := range AllKinds {
			if !seen[k] {
				t.Errorf("maxActive %d: kind %s never planned in %s", maxActive, k, window)
			}
		}
	}
}

func TestPlanOnlyEnabledKinds(t *testing.T) {
	tp := topo
	tp.Kinds = []string{Cut, Delay}
	for _, s := range Plan(1, 2*time.Minute, tp, 2) {
		if s.Kind != Cut && s.Kind != Delay {
			t.Fatalf("planned %s, only cut and delay enabled", s)
		}
	}
	tp.Services = nil // no services: no service faults, no pg-backend-kill
	tp.Kinds = []string{PGCrash, KafkaRestart, PGBackendKill}
	if steps := Plan(1, time.Minute, tp, 2); len(steps) != 0 {
		t.Fatalf("planned %v without services", steps)
	}
}

type fakeInjector struct {
	mu       sync.Mutex
	active   map[string]bool
	overlap  bool
	injected []string
	healed   []string
	fail     string
}

func (f *fakeInjector) Inject(_ context.Context, s Step, rec *history.Fault) (func(context.Context) error, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.active[s.Resource()] {
		f.overlap = true
	}
	f.active[s.Resource()] = true
	f.injected = append(f.injected, s.Kind)
	if s.Kind == f.fail {
		return nil, errors.New("boom")
	}
	rec.Verified = []string{"ok"}
	return func(context.Context) error {
		f.mu.Lock()
		defer f.mu.Unlock()
		delete(f.active, s.Resource())
		f.healed = append(f.healed, s.Kind)
		return nil
	}, nil
}

// Run injects each step, never two on one resource at once, heals every
// fault (early when the context ends) and records each with its times.
func TestRunInjectsHealsAndRecords(t *testing.T) {
	steps := []Step{
		{At: 0, Kind: Cut, Target: "a", Hold: 30 * time.Millisecond},
		{At: 10 * time.Millisecond, Kind: Cut, Target: "a", Hold: 10 * time.Millisecond}, // waits for the first
		{At: 10 * time.Millisecond, Kind: Kill, Target: "api", Hold: 10 * time.Millisecond},
		{At: 20 * time.Millisecond, Kind: Poison, Target: "order"},
		{At: 40 * time.Millisecond, Kind: Delay, Target: "b", Hold: time.Hour}, // healed when ctx ends
		{At: time.Hour, Kind: Kill, Target: "relay-1"},                         // never starts
	}
	f := &fakeInjector{active: map[string]bool{}, fail: Poison}
	var (
		mu   sync.Mutex
		recs []history.Fault
	)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	Run(ctx, start, steps, f, func(r history.Fault) { mu.Lock(); recs = append(recs, r); mu.Unlock() }, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("Run took %s with a 300ms context", d)
	}
	if f.overlap {
		t.Fatal("two faults on one resource at once")
	}
	if len(recs) != 5 || len(f.healed) != 4 {
		t.Fatalf("%d records, %d heals (want 5, 4): %+v", len(recs), len(f.healed), recs)
	}
	for _, r := range recs {
		if r.Healed.Before(r.Start) || r.Start.IsZero() {
			t.Errorf("fault %d %s: start %s healed %s", r.Seq, r.Kind, r.Start, r.Healed)
		}
		if (r.Kind == Poison) != (r.Err != "") {
			t.Errorf("fault %d %s: err %q", r.Seq, r.Kind, r.Err)
		}
	}
}

// An oversize fault targets an aggregate type, with a payload size over
// the broker's and the producer's limits, one at a time; like poison it
// needs no process or service in the topology.
func TestPlanOversize(t *testing.T) {
	tp := Topology{Kinds: []string{Oversize}}
	steps := Plan(3, 2*time.Minute, tp, 2)
	if len(steps) < 5 {
		t.Fatalf("%d oversize steps in 2 minutes: %v", len(steps), steps)
	}
	targets := map[string]bool{}
	for i, s := range steps {
		targets[s.Target] = true
		if s.Kind != Oversize || (s.Target != "product" && s.Target != "order") || s.Resource() != "store:oversize" {
			t.Errorf("step %s (resource %s)", s, s.Resource())
		}
		var n int
		if _, err := fmt.Sscanf(s.Param, "bytes=%d", &n); err != nil || n < OversizeMin || n >= OversizeMax || OversizeMin <= 1048588 {
			t.Errorf("step %s: param %q, want bytes=N with N in [%d, %d) over 1048588", s, s.Param, OversizeMin, OversizeMax)
		}
		if s.Hold < 0 || s.Hold > time.Second {
			t.Errorf("step %s: hold %s", s, s.Hold)
		}
		if i > 0 && s.At < steps[i-1].At+steps[i-1].Hold {
			t.Errorf("step %s overlaps %s on one resource", s, steps[i-1])
		}
	}
	if !targets["product"] || !targets["order"] {
		t.Errorf("targets %v, want both aggregate types", targets)
	}
	if !slices.Contains(AllKinds, Oversize) {
		t.Error("oversize is not in AllKinds")
	}
}

// Every plan, even the 22 s fault window of `make test`'s short runs,
// starts with the bad-data kinds; the rest of the first deck and the
// later decks stay shuffled. With data kinds disabled nothing changes.
func TestPlanStartsWithBadData(t *testing.T) {
	firsts := map[string]bool{}
	for seed := uint64(1); seed <= 200; seed++ {
		steps := Plan(seed, 22*time.Second, topo, 2)
		if len(steps) < 3 {
			t.Fatalf("seed %d: only %d faults in 22 s", seed, len(steps))
		}
		got := []string{steps[0].Kind, steps[1].Kind}
		slices.Sort(got)
		if !slices.Equal(got, []string{Oversize, Poison}) {
			t.Fatalf("seed %d: the plan starts with %v, want poison and oversize first: %v", seed, got, steps)
		}
		firsts[steps[0].Kind+">"+steps[2].Kind] = true
	}
	if len(firsts) < 6 {
		t.Errorf("the kinds after the data faults hardly vary over 200 seeds: %v", firsts)
	}
	noData := topo
	noData.Kinds = []string{Kill, Pause, Cut}
	for _, s := range Plan(3, time.Minute, noData, 2) {
		if slices.Contains(dataKinds, s.Kind) {
			t.Fatalf("disabled kind %s planned", s.Kind)
		}
	}
	if a, b := Plan(9, time.Minute, noData, 2), Plan(9, time.Minute, noData, 2); !reflect.DeepEqual(a, b) {
		t.Fatal("not reproducible")
	}
}
