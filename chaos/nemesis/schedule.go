// Package nemesis plans and runs the faults of a chaos run. Plan is a pure
// function of the seed, the duration and the topology, so a seed always
// gives the same schedule; Run executes it through an Injector (the harness
// knows how to kill a process or cut a link) and records each fault with
// what the injector verified and when it was healed.
package nemesis

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"cqrsflow/chaos/history"
)

// Fault kinds.
const (
	Kill          = "kill"             // SIGKILL a binary; restarted after the hold
	Term          = "term"             // SIGTERM a binary (graceful); restarted after the hold
	Pause         = "pause"            // SIGSTOP a binary or a service for the hold, then SIGCONT
	PGCrash       = "pg-crash"         // PostgreSQL immediate shutdown (crash recovery at restart)
	PGBackendKill = "pg-backend-kill"  // SIGKILL one backend: the postmaster reinitializes
	KafkaRestart  = "kafka-restart"    // SIGKILL or SIGTERM the broker; started after the hold
	ESRestart     = "es-restart"       // SIGKILL Elasticsearch; started after the hold
	Cut           = "cut"              // a component's link to a service refuses and drops connections
	Delay         = "delay"            // a component's link to a service is slow
	JoinRelay     = "join-relay"       // a second relay joins for the hold, then leaves
	JoinProjector = "join-projector"   // a third projector joins for the hold, then leaves
	Poison        = history.KindPoison // malformed records written straight to an event topic
	// Oversize: a bad upstream appends, straight to the event store, an
	// event whose Kafka record is over the broker's and the relay
	// producer's size limit, and a normal second event of the same (fresh)
	// aggregate: the relay must dead-letter the first and hold the second.
	Oversize = history.KindOversize
)

// The payload sizes of an oversize fault, [OversizeMin, OversizeMax).
const (
	OversizeMin = 1_500_000
	OversizeMax = 2_000_000
)

// AllKinds is every fault kind, in a stable order.
var AllKinds = []string{Kill, Term, Pause, PGCrash, PGBackendKill, KafkaRestart, ESRestart, Cut, Delay,
	JoinRelay, JoinProjector, Poison, Oversize}

// Topology is what faults can target.
type Topology struct {
	Binaries []string // e.g. api, relay-1, projector-1, projector-2
	Services []string // postgres, kafka, elasticsearch
	Links    []string // <component>-><service> links through a proxy, e.g. relay-1->kafka
	Backends []string // components whose PostgreSQL backend may be killed
	Kinds    []string // enabled kinds (AllKinds by default)
}

// Step is one planned fault.
type Step struct {
	At     time.Duration // offset from the start of the fault window
	Kind   string
	Target string
	Hold   time.Duration
	Param  string // delay duration, signal, record count…
}

func (s Step) String() string {
	p := ""
	if s.Param != "" {
		p = " " + s.Param
	}
	return fmt.Sprintf("+%s %s %s%s hold %s", s.At.Round(100*time.Millisecond), s.Kind, s.Target, p, s.Hold.Round(100*time.Millisecond))
}

// Resource is what a step occupies: two steps on one resource never
// overlap (the executor waits).
func (s Step) Resource() string {
	switch s.Kind {
	case Kill, Term:
		return "proc:" + s.Target
	case Pause:
		return "proc:" + s.Target
	case PGCrash, PGBackendKill:
		return "proc:postgres"
	case KafkaRestart:
		return "proc:kafka"
	case ESRestart:
		return "proc:elasticsearch"
	case Cut, Delay:
		return "link:" + s.Target
	case JoinRelay:
		return "proc:relay-2"
	case JoinProjector:
		return "proc:projector-3"
	case Oversize:
		return "store:oversize" // one bad upstream at a time
	}
	return s.Kind
}

// holds are the [min, max) hold times of each kind.
var holds = map[string][2]time.Duration{
	Kill: {500 * time.Millisecond, 8 * time.Second}, Term: {0, 3 * time.Second},
	Pause: {500 * time.Millisecond, 8 * time.Second}, PGCrash: {0, 5 * time.Second}, PGBackendKill: {0, time.Second},
	KafkaRestart: {0, 5 * time.Second}, ESRestart: {0, 5 * time.Second},
	Cut: {500 * time.Millisecond, 10 * time.Second}, Delay: {2 * time.Second, 12 * time.Second},
	JoinRelay: {5 * time.Second, 30 * time.Second}, JoinProjector: {5 * time.Second, 30 * time.Second},
	Poison: {0, time.Second}, Oversize: {0, time.Second},
}

// recovery is how long a kind typically keeps its resource busy after the
// hold (a JVM start), so the plan does not pile faults onto a restart.
var recovery = map[string]time.Duration{KafkaRestart: 20 * time.Second, ESRestart: 30 * time.Second,
	PGCrash: 3 * time.Second, PGBackendKill: 3 * time.Second, Kill: 2 * time.Second, Term: 2 * time.Second}

// dataKinds are the kinds that inject bad data rather than break the
// infrastructure: the first deck of a plan starts with them, so that even
// the short run of `make test` has the pipeline deal with bad records and
// rows while the other faults come and go.
var dataKinds = []string{Poison, Oversize}

// Plan returns the fault schedule of a window of the given length: faults
// start between a short warm-up and the window's end, one kind after the
// other from a shuffled deck (so every enabled kind comes up before any
// comes up twice; the first deck puts the enabled dataKinds first), with
// random gaps, targets, holds and parameters, and at most maxActive
// faults at once. Same arguments, same schedule.
func Plan(seed uint64, window time.Duration, topo Topology, maxActive int) []Step {
	rng := rand.New(rand.NewPCG(seed, 0x6e656d65736973))
	kinds := topo.Kinds
	if len(kinds) == 0 {
		kinds = AllKinds
	}
	kinds = slices.DeleteFunc(slices.Clone(kinds), func(k string) bool { return len(targets(k, topo)) == 0 })
	if len(kinds) == 0 || maxActive < 1 {
		return nil
	}
	var (
		steps []Step
		deck  []string
		t     = min(5*time.Second, window/10)
	)
	for first := true; t < window; {
		if len(deck) == 0 {
			deck = slices.Clone(kinds)
			rng.Shuffle(len(deck), func(i, j int) { deck[i], deck[j] = deck[j], deck[i] })
			if first {
				slices.SortStableFunc(deck, func(a, b string) int {
					return boolInt(!slices.Contains(dataKinds, a)) - boolInt(!slices.Contains(dataKinds, b))
				})
				first = false
			}
		}
		kind := deck[0]
		deck = deck[1:]
		tg := targets(kind, topo)
		s := Step{Kind: kind, Target: tg[rng.IntN(len(tg))]}
		h := holds[kind]
		s.Hold = h[0] + time.Duration(rng.Int64N(int64(h[1]-h[0])+1))
		s.Param = param(rng, kind)
		s.At = earliest(steps, s, t, maxActive)
		if s.At >= window {
			break
		}
		s.Hold = min(s.Hold, window-s.At)
		steps = append(steps, s)
		t = s.At + time.Duration(500+rng.IntN(4500))*time.Millisecond
	}
	return steps
}

// earliest is the first time from t on when s's resource is free and
// fewer than maxActive planned faults are active.
func earliest(steps []Step, s Step, t time.Duration, maxActive int) time.Duration {
	for {
		active, next := 0, time.Duration(-1)
		for _, o := range steps {
			end := o.At + o.Hold + recovery[o.Kind]
			if o.At <= t && t < end {
				if o.Resource() == s.Resource() {
					active = maxActive // the resource is busy: wait for it
				} else {
					active++
				}
				if next < 0 || end < next {
					next = end
				}
			}
		}
		if active < maxActive || next < 0 {
			return t
		}
		t = next
	}
}

func targets(kind string, topo Topology) []string {
	switch kind {
	case Kill, Term:
		return topo.Binaries
	case Pause:
		return append(slices.Clone(topo.Binaries), topo.Services...)
	case PGCrash:
		return keep(topo.Services, "postgres")
	case PGBackendKill:
		if slices.Contains(topo.Services, "postgres") {
			return topo.Backends
		}
	case KafkaRestart:
		return keep(topo.Services, "kafka")
	case ESRestart:
		return keep(topo.Services, "elasticsearch")
	case Cut, Delay:
		return topo.Links
	case JoinRelay:
		return []string{"relay-2"}
	case JoinProjector:
		return []string{"projector-3"}
	case Poison, Oversize:
		return []string{"product", "order"}
	}
	return nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func keep(list []string, name string) []string {
	if slices.Contains(list, name) {
		return []string{name}
	}
	return nil
}

func param(rng *rand.Rand, kind string) string {
	switch kind {
	case Delay:
		// Mostly a slow network, sometimes one slower than the clients'
		// and the binaries' own timeouts.
		ms := 20 + rng.IntN(480)
		if rng.IntN(4) == 0 {
			ms = 1000 + rng.IntN(5000)
		}
		return (time.Duration(ms) * time.Millisecond).String()
	case KafkaRestart:
		return []string{"KILL", "TERM"}[rng.IntN(2)]
	case JoinRelay, JoinProjector:
		return []string{"leave=TERM", "leave=KILL"}[rng.IntN(2)]
	case Poison:
		return fmt.Sprintf("records=%d", 1+rng.IntN(4))
	case Oversize:
		// The payload's size: 1.5 to 2 MB, well over the chaos broker's
		// message.max.bytes (its default, 1048588) and the relay
		// producer's batch limit (1000012).
		return fmt.Sprintf("bytes=%d", OversizeMin+rng.IntN(OversizeMax-OversizeMin))
	}
	return ""
}
