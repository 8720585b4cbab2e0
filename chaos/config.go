package main

import (
	"crypto/rand"
	binenc "encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"cqrsflow/chaos/nemesis"
)

// config of a chaos invocation: env vars (CHAOS_*) with flags of the same
// meaning, flags winning.
type config struct {
	Duration     time.Duration // workload time of one run, faults included
	Quiet        time.Duration // the end of it without faults
	Seeds        []uint64
	SeedsRandom  []bool // which seeds were drawn at random (printed)
	StateDir     string
	OutDir       string
	PortBase     int
	Clients      int
	Rate         float64
	MaxFaults    int
	Kinds        []string
	DrainTimeout time.Duration
	Race         bool
	KeepStack    bool
	Repo         string
}

// mainStackPorts are the shared stack's defaults: the chaos stack must
// never land on them (the nemesis kills what listens there).
var mainStackPorts = []int{15432, 19092, 19093, 19200, 19300}

func envDefault(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func parseConfig(args []string, stderr io.Writer) (config, error) {
	var (
		c                        config
		errs                     []error
		seeds, kinds, dur, quiet string
		drain, state, out, rate  string
		base, clients, maxFaults string
		race, keep               string
	)
	fs := flag.NewFlagSet("chaos", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&dur, "duration", envDefault("CHAOS_DURATION", "10m"), "workload time of each run, faults included (env CHAOS_DURATION)")
	fs.StringVar(&quiet, "quiet", envDefault("CHAOS_QUIET", "10s"), "the last part of the workload, without faults (env CHAOS_QUIET)")
	fs.StringVar(&seeds, "seed", envDefault("CHAOS_SEED", "random"), "comma list of seeds, one run each; 'random' draws one (env CHAOS_SEED)")
	fs.StringVar(&state, "state-dir", envDefault("CHAOS_STATE_DIR", "/var/tmp/cqrsflow-chaos"), "state dir of the chaos stack (env CHAOS_STATE_DIR)")
	fs.StringVar(&out, "out", envDefault("CHAOS_OUT", ""), "where runs write history, report and logs (env CHAOS_OUT; default <state dir>/runs)")
	fs.StringVar(&base, "port-base", envDefault("CHAOS_PORT_BASE", "26400"), "first of the ~50 ports the chaos stack uses (env CHAOS_PORT_BASE)")
	fs.StringVar(&clients, "clients", envDefault("CHAOS_CLIENTS", "12"), "concurrent clients (env CHAOS_CLIENTS)")
	fs.StringVar(&rate, "rate", envDefault("CHAOS_RATE", "40"), "operations per second over all clients (env CHAOS_RATE)")
	fs.StringVar(&maxFaults, "max-faults", envDefault("CHAOS_MAX_FAULTS", "2"), "faults in force at once, at most (env CHAOS_MAX_FAULTS)")
	fs.StringVar(&kinds, "faults", envDefault("CHAOS_FAULTS", "all"), "fault kinds, comma list or 'all': "+strings.Join(nemesis.AllKinds, ",")+" (env CHAOS_FAULTS)")
	fs.StringVar(&drain, "drain-timeout", envDefault("CHAOS_DRAIN_TIMEOUT", "3m"), "how long the pipeline may take to drain after the workload (env CHAOS_DRAIN_TIMEOUT)")
	fs.StringVar(&race, "race", envDefault("CHAOS_RACE", "false"), "build the binaries with the race detector (env CHAOS_RACE)")
	fs.StringVar(&keep, "keep-stack", envDefault("CHAOS_KEEP_STACK", "false"), "leave the chaos stack running at the end, for debugging (env CHAOS_KEEP_STACK)")
	fs.StringVar(&c.Repo, "repo", ".", "repository root (the binaries are built from it, deploy/local runs the stack)")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		errs = append(errs, fmt.Errorf("unexpected arguments %v", fs.Args()))
	}
	durations := []struct {
		name string
		s    string
		p    *time.Duration
		min  time.Duration
	}{{"duration", dur, &c.Duration, 20 * time.Second}, {"quiet", quiet, &c.Quiet, 0}, {"drain-timeout", drain, &c.DrainTimeout, 10 * time.Second}}
	for _, d := range durations {
		v, err := time.ParseDuration(d.s)
		if err != nil || v < d.min || v > 24*time.Hour {
			errs = append(errs, fmt.Errorf("-%s %q: want a duration between %s and 24h", d.name, d.s, d.min))
		}
		*d.p = v
	}
	if c.Quiet >= c.Duration/2 {
		errs = append(errs, fmt.Errorf("-quiet %s: must be under half of -duration %s", c.Quiet, c.Duration))
	}
	ints := []struct {
		name     string
		s        string
		p        *int
		min, max int
	}{{"port-base", base, &c.PortBase, 1024, 32700}, {"clients", clients, &c.Clients, 1, 256}, {"max-faults", maxFaults, &c.MaxFaults, 1, 5}}
	for _, n := range ints {
		v, err := strconv.Atoi(n.s)
		if err != nil || v < n.min || v > n.max {
			errs = append(errs, fmt.Errorf("-%s %q: want an integer in %d..%d", n.name, n.s, n.min, n.max))
		}
		*n.p = v
	}
	for _, p := range mainStackPorts {
		if p >= c.PortBase && p < c.PortBase+portSpan {
			errs = append(errs, fmt.Errorf("-port-base %d: its ports %d..%d include %d of the shared stack", c.PortBase, c.PortBase, c.PortBase+portSpan-1, p))
		}
	}
	r, err := strconv.ParseFloat(rate, 64)
	if err != nil || r <= 0 || r > 5000 {
		errs = append(errs, fmt.Errorf("-rate %q: want a number in (0, 5000]", rate))
	}
	c.Rate = r
	for _, b := range []struct {
		name, s string
		p       *bool
	}{{"race", race, &c.Race}, {"keep-stack", keep, &c.KeepStack}} {
		v, err := strconv.ParseBool(b.s)
		if err != nil {
			errs = append(errs, fmt.Errorf("-%s %q: want true or false", b.name, b.s))
		}
		*b.p = v
	}
	c.Kinds, err = parseKinds(kinds)
	errs = append(errs, err)
	c.Seeds, c.SeedsRandom, err = parseSeeds(seeds)
	errs = append(errs, err)
	c.StateDir = filepath.Clean(state)
	if !filepath.IsAbs(c.StateDir) {
		errs = append(errs, fmt.Errorf("-state-dir %q: must be absolute", state))
	}
	switch c.StateDir {
	case "/", "/var/tmp", "/tmp", "/var", "/var/tmp/cqrsflow-local":
		errs = append(errs, fmt.Errorf("-state-dir %s: not a dir of its own (the shared stack uses /var/tmp/cqrsflow-local)", c.StateDir))
	}
	c.OutDir = out
	if c.OutDir == "" {
		c.OutDir = filepath.Join(c.StateDir, "runs")
	}
	return c, errors.Join(errs...)
}

func parseKinds(s string) ([]string, error) {
	if s == "all" || s == "" {
		return nemesis.AllKinds, nil
	}
	var out []string
	for _, k := range strings.Split(s, ",") {
		k = strings.TrimSpace(k)
		if !slices.Contains(nemesis.AllKinds, k) {
			return nil, fmt.Errorf("-faults: unknown kind %q (known: %s)", k, strings.Join(nemesis.AllKinds, ","))
		}
		out = append(out, k)
	}
	return out, nil
}

func parseSeeds(s string) ([]uint64, []bool, error) {
	var (
		seeds  []uint64
		random []bool
	)
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "random" {
			var b [8]byte
			_, _ = rand.Read(b[:])
			// 15 digits at most: easy to copy from the output.
			seeds, random = append(seeds, binenc.LittleEndian.Uint64(b[:])%1_000_000_000_000_000), append(random, true)
			continue
		}
		v, err := strconv.ParseUint(f, 10, 64)
		if err != nil {
			return nil, nil, fmt.Errorf("-seed: %q is not an unsigned integer or 'random'", f)
		}
		seeds, random = append(seeds, v), append(random, false)
	}
	if len(seeds) == 0 || len(seeds) > 20 {
		return nil, nil, errors.New("-seed: give 1 to 20 seeds")
	}
	return seeds, random, nil
}
