package relay

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"cqrsflow/bench/internal/procs"
	"cqrsflow/bench/loadgen"
	outboxrelay "cqrsflow/internal/relay"
	"cqrsflow/internal/testenv"
	"cqrsflow/internal/testenv/binary"
)

// The steady phase: what the relay costs per event at a steady write
// rate, the outbox-relay binary as it ships in a process of its own (so
// its CPU is its own, not the load generator's), with the CPU of the
// PostgreSQL backends that serve it (told apart by application_name).

// steadyStep is one rate of the steady phase.
type steadyStep struct {
	Rate     float64
	Writes   loadgen.Summary
	Window   time.Duration // the load window the CPU is measured over
	Relay    float64       // cores used by the outbox-relay process
	Backends float64       // cores used by its PostgreSQL backends
	Drain    time.Duration // after the window, until the outbox was empty
	Stmts    []stmtStat    // -statements: the busiest statements of the window
}

// perEvent is the CPU time of the relay and its backends per write.
func (s steadyStep) perEvent() time.Duration {
	if s.Writes.Ops == 0 {
		return 0
	}
	secs := (s.Relay + s.Backends) * s.Window.Seconds() / float64(s.Writes.Ops)
	return time.Duration(secs * float64(time.Second))
}

func (s steadyStep) print() {
	fmt.Printf("  %.0f writes/s: %s\n", s.Rate, s.Writes)
	fmt.Printf("    relay %.3f cores + its PostgreSQL backends %.3f cores over %s = %.1f µs of CPU per event (outbox empty %s after the window)\n",
		s.Relay, s.Backends, s.Window.Round(time.Millisecond), micros(s.perEvent()), s.Drain.Round(time.Millisecond))
	if len(s.Stmts) > 0 {
		printStatements(s.Stmts, s.Writes.Ops)
	}
}

// steadyWarmup runs before the first rate, unmeasured: leases taken,
// pools filled, plans cached.
const steadyWarmup = 3 * time.Second

// steady measures each steady rate with the outbox-relay binary, then,
// with -floor, the same rates with the floor (bench/internal/rawrelay)
// in the relay's place, on the same schema and topics.
func (b *bench) steady(ctx context.Context) (relay, floor []steadyStep, err error) {
	if relay, err = b.steadySide(ctx, "outbox-relay (pid %d) as shipped", b.startRelayBinary); err != nil || !b.s.Floor {
		return relay, nil, err
	}
	floor, err = b.steadySide(ctx, "the floor, rawrelay (pid %d)", b.startFloor)
	for i := range min(len(relay), len(floor)) {
		if f := floor[i].perEvent(); f > 0 {
			fmt.Printf("  %.0f writes/s: relay / floor = %.2f (%.1f / %.1f µs per event)\n", relay[i].Rate,
				float64(relay[i].perEvent())/float64(f), micros(relay[i].perEvent()), micros(f))
		}
	}
	return relay, floor, err
}

func micros(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1000 }

// steadySide starts a relay (start) and measures each steady rate with
// it; what names the side in the output.
func (b *bench) steadySide(ctx context.Context, what string, start func(context.Context) (*binary.Process, string, error)) ([]steadyStep, error) {
	relay, app, err := start(ctx)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err := relay.Stop(20 * time.Second); err != nil {
			fmt.Fprintf(os.Stderr, "steady phase: %v\n", err)
		}
	}()
	var stmts *statements
	if b.s.Statements {
		if stmts, err = openStatements(ctx, b.pool); err != nil {
			return nil, err
		}
	}
	ap := newAppender(b.pool, 5000, b.s.PayloadBytes)
	defer ap.close()
	fmt.Printf("  steady phase: "+what+", warm-up %s at 100 writes/s\n", relay.Pid(), steadyWarmup)
	loadgen.OpenLoop(ctx, 100, steadyWarmup, 64, ap.append)
	var out []steadyStep
	for _, rate := range b.s.SteadyRates {
		if _, err := b.awaitEmpty(ctx, relay); err != nil {
			return out, err
		}
		st, err := b.steadyRate(ctx, relay, app, stmts, ap, rate)
		if err != nil {
			return out, err
		}
		st.print()
		out = append(out, st)
	}
	return out, nil
}

// steadyRate drives one rate for SteadyStep and measures the window.
func (b *bench) steadyRate(ctx context.Context, relay *binary.Process, app string, stmts *statements, ap *appender, rate float64) (steadyStep, error) {
	st := steadyStep{Rate: rate}
	var before map[int64]stmtStat
	if stmts != nil {
		var err error
		if before, err = stmts.read(ctx); err != nil {
			return st, err
		}
	}
	cpu0, err := b.sampleRelayCPU(ctx, relay, app)
	if err != nil {
		return st, err
	}
	st.Writes = loadgen.OpenLoop(ctx, rate, b.s.SteadyStep, 64, ap.append)
	cpu1, err := b.sampleRelayCPU(ctx, relay, app)
	if err != nil {
		return st, err
	}
	st.Window = cpu1.At.Sub(cpu0.At)
	cores := procs.CoresUsed(cpu0, cpu1)
	st.Relay, st.Backends = cores[relayGroup], cores[backendsGroup]
	if stmts != nil {
		after, err := stmts.read(ctx)
		if err != nil {
			return st, err
		}
		st.Stmts = stmtDeltas(before, after)
	}
	if st.Writes.Ops == 0 {
		return st, fmt.Errorf("steady phase at %.0f writes/s: no write succeeded (%v)", rate, st.Writes.FirstError)
	}
	st.Drain, err = b.awaitEmpty(ctx, relay)
	return st, err
}

const (
	relayGroup    = "outbox-relay"
	backendsGroup = "pg backends of outbox-relay"
)

// sampleRelayCPU reads the CPU time of the relay process and of the
// PostgreSQL backends whose application_name is app. The backends are
// read from /proc: PostgreSQL must run on this machine.
func (b *bench) sampleRelayCPU(ctx context.Context, relay *binary.Process, app string) (procs.Sample, error) {
	rows, err := b.pool.Query(ctx, `SELECT pid FROM pg_stat_activity WHERE application_name = $1`, app)
	if err != nil {
		return procs.Sample{}, fmt.Errorf("listing the relay's backends: %w", err)
	}
	var pids []int
	var pid int
	for rows.Next() {
		if err := rows.Scan(&pid); err != nil {
			rows.Close()
			return procs.Sample{}, err
		}
		pids = append(pids, pid)
	}
	if err := rows.Err(); err != nil {
		return procs.Sample{}, err
	}
	groups := []procs.Group{{Name: relayGroup, Pid: relay.Pid()}}
	readable := 0
	for _, p := range pids {
		if _, err := procs.ReadStat(p); err == nil {
			readable++
		}
		groups = append(groups, procs.Group{Name: backendsGroup, Pid: p})
	}
	if readable == 0 {
		return procs.Sample{}, fmt.Errorf("none of the relay's %d PostgreSQL backends is readable in /proc: the steady phase needs PostgreSQL on this machine", len(pids))
	}
	return procs.SampleCPU(groups, nil), nil
}

// awaitEmpty waits until the relay published everything written so far.
func (b *bench) awaitEmpty(ctx context.Context, relay *binary.Process) (time.Duration, error) {
	t0 := time.Now()
	err := relay.Until(ctx, lagWait, "the relay to empty the outbox", func() (bool, error) {
		var left bool
		if err := b.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM outbox)`).Scan(&left); err != nil {
			return false, testenv.Permanent(err)
		}
		return !left, nil
	})
	return time.Since(t0), err
}

// side is what a steady side's process needs: a work directory (removed
// at cleanup), the application_name of its PostgreSQL connections (how
// its backends are told apart), the schema's URL with that name, and a
// free loopback address for its HTTP server.
type side struct{ dir, app, pgURL, addr string }

func (b *bench) newSide(name string) (side, error) {
	dir, err := os.MkdirTemp("", "cqrsflow-bench-"+name+"-")
	if err != nil {
		return side{}, err
	}
	b.workDirs = append(b.workDirs, dir)
	s := side{dir: dir, app: "bench-" + name + "-steady-" + testenv.RandomHex(4)}
	if s.pgURL, err = testenv.WithParam(b.schema.URL, "application_name", s.app); err != nil {
		return side{}, err
	}
	if s.addr, err = testenv.LoopbackAddr(); err != nil {
		return side{}, err
	}
	return s, nil
}

// start starts the binary of spec and waits until it is ready.
func (s side) start(ctx context.Context, spec binary.Spec) (*binary.Process, string, error) {
	spec.Addr, spec.LogPath = s.addr, filepath.Join(s.dir, spec.Name+".log")
	p, err := binary.Start(spec)
	if err != nil {
		return nil, "", err
	}
	if err := p.WaitReady(ctx, 90*time.Second); err != nil {
		_ = p.Stop(5 * time.Second)
		return nil, "", err
	}
	return p, s.app, nil
}

// startRelayBinary builds outbox-relay (or takes it from -bin-dir) and
// starts it on the run's schema and topics; app is the application_name
// of its PostgreSQL connections.
func (b *bench) startRelayBinary(ctx context.Context) (*binary.Process, string, error) {
	s, err := b.newSide("relay")
	if err != nil {
		return nil, "", err
	}
	bin := b.s.BinDir
	if bin == "" {
		bin = s.dir
		fmt.Println("  steady phase: building outbox-relay")
		if err := binary.Build(ctx, b.s.RepoDir, bin, "cqrsflow/outbox-relay"); err != nil {
			return nil, "", fmt.Errorf("building outbox-relay (run from inside the repository): %w", err)
		}
	}
	env := []string{"POSTGRES_URL=" + s.pgURL, "KAFKA_BROKERS=" + strings.Join(b.s.Brokers, ","), "TOPIC_PREFIX=" + b.relayPrefix,
		fmt.Sprintf("TOPIC_PARTITIONS=%d", b.s.Partitions), "METRICS_ADDR=" + s.addr, "RELAY_ID=" + s.app, "MIGRATE=false"}
	if b.s.DebugAddr != "" {
		env = append(env, "DEBUG_ADDR="+b.s.DebugAddr) // the binary refuses one off loopback
	}
	return s.start(ctx, binary.Spec{Name: "outbox-relay", Bin: filepath.Join(bin, "outbox-relay"), Env: env})
}

// startFloor builds the floor (bench/internal/rawrelay) and starts it on
// the run's schema, producing to the raw producer's topics, with the
// relay's linger, poll interval and batch size; app is the
// application_name of its PostgreSQL connections.
func (b *bench) startFloor(ctx context.Context) (*binary.Process, string, error) {
	s, err := b.newSide("rawrelay")
	if err != nil {
		return nil, "", err
	}
	fmt.Println("  steady phase: building the floor (rawrelay)")
	if err := binary.Build(ctx, b.s.RepoDir, s.dir, "cqrsflow/bench/internal/rawrelay"); err != nil {
		return nil, "", fmt.Errorf("building rawrelay (run from inside the repository): %w", err)
	}
	d := outboxrelay.DefaultConfig()
	args := []string{"-addr", s.addr, "-postgres-url", s.pgURL, "-brokers", strings.Join(b.s.Brokers, ","), "-topic-prefix", b.rawPrefix,
		"-linger", d.Linger.String(), "-poll", d.PollInterval.String(), "-batch", strconv.Itoa(b.s.BatchSize)}
	if b.s.DebugAddr != "" {
		args = append(args, "-pprof")
		fmt.Printf("  steady phase: the floor's profile: go tool pprof 'http://%s/debug/pprof/profile?seconds=20'\n", s.addr)
	}
	return s.start(ctx, binary.Spec{Name: "rawrelay", Bin: filepath.Join(s.dir, "rawrelay"), Args: args})
}
