// Package write is the write part (`bench write`): closed-loop load (64
// clients, mixed creates/updates of products) on five sides in the same
// run, with the same concurrency and pool size: the real api binary with
// group commit (the default), a second api binary with GROUP_COMMIT=false,
// a raw pgx baseline that runs the same SQL transaction in-process one
// command per transaction, one that groups commands the api's way
// (eventstore.Batcher in-process: the ceiling of the api with group
// commit), and the floor: a bare net/http server (bench/internal/hop
// -answer) that reads the same requests and answers them without the
// database, whose CPU per request is what the HTTP exchange alone costs
// any Go service here. Then an open-loop phase at 50% of the api's
// measured maximum for both apis, the one-per-transaction baseline and
// the floor, with latency measured from the intended send time, and the
// floor alone at the api's maximum (its CPU per request at the api's
// rate). The sides run in
// rotating slices so machine noise hits all alike. Everything runs in a
// private schema of the local PostgreSQL (dropped afterwards) and on
// 127.0.0.1 only.
package write

import (
	"context"
	"flag"
	"fmt"
	"runtime"
	"time"

	"cqrsflow/bench/internal/cli"
	"cqrsflow/bench/internal/procs"
	"cqrsflow/bench/internal/result"
	"cqrsflow/internal/config"
)

// settings are the part's flags.
type settings struct {
	PostgresURL string
	APIBin      string
	Duration    time.Duration // closed loop, per side
	Slices      int
	FixedDur    time.Duration // open loop, per side
	Clients     int
	Products    int
	UpdateShare float64
	MaxConns    int
	Verbose     bool
	LogLevel    string
	Quick       bool
}

func parseSettings(args []string) (settings, error) {
	s := settings{Quick: result.Quick()}
	fs := flag.NewFlagSet("bench write", flag.ContinueOnError)
	fs.StringVar(&s.PostgresURL, "postgres-url", cli.Env("POSTGRES_URL", config.DefaultPostgresURL), "PostgreSQL URL (a private schema is created and dropped)")
	fs.StringVar(&s.APIBin, "api-bin", "", "api binary (default: go build ./api into a temp dir)")
	fs.DurationVar(&s.Duration, "duration", result.Pick(s.Quick, 6*time.Second, 20*time.Second), "closed-loop duration of each side")
	fs.IntVar(&s.Slices, "slices", 4, "the closed-loop duration is run in this many alternating api/raw slices")
	fs.DurationVar(&s.FixedDur, "fixed-duration", result.Pick(s.Quick, 6*time.Second, 16*time.Second), "open-loop duration at 50% of the API maximum (per side)")
	fs.IntVar(&s.Clients, "clients", 64, "concurrent clients (closed loop)")
	fs.IntVar(&s.Products, "products", 2000, "products seeded for the updates")
	fs.Float64Var(&s.UpdateShare, "update-share", 0.5, "share of updates in the mix (rest: creates)")
	fs.IntVar(&s.MaxConns, "max-conns", 16, "PostgreSQL pool size of the api and of the baseline")
	fs.BoolVar(&s.Verbose, "v", false, "print every slice")
	fs.StringVar(&s.LogLevel, "log-level", "info", "api LOG_LEVEL (info writes one access log line per request)")
	if err := cli.Parse(fs, args); err != nil {
		return s, err
	}
	if s.Slices < 1 || s.Clients < 1 || s.Duration <= 0 || s.FixedDur <= 0 {
		return s, cli.Usagef("-slices, -clients, -duration and -fixed-duration must be > 0")
	}
	if s.Products < 1 && s.UpdateShare > 0 {
		return s, cli.Usagef("-products must be > 0 when -update-share is")
	}
	return s, nil
}

// Run is the write part.
func Run(ctx context.Context, args []string) error {
	s, err := parseSettings(args)
	if err != nil {
		return err
	}
	started := time.Now()
	b, err := setup(ctx, s)
	if err != nil {
		return err
	}
	defer b.cleanup()

	fmt.Printf("bench write: %d clients, %v per side, %.0f%% updates, pool %d conns, %d CPUs, api LOG_LEVEL=%s\n",
		s.Clients, s.Duration, 100*s.UpdateShare, s.MaxConns, runtime.NumCPU(), s.LogLevel)
	m := measurement{Load0: procs.LoadAvg()}
	m.Closed = b.closedLoop(ctx)
	sides := b.sides()
	for k, sd := range sides {
		fmt.Printf("%-40s %v\n", sd.name+":", m.Closed.Sum[k])
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	for k, sd := range sides {
		if m.Closed.Sum[k].Ops == 0 {
			return fmt.Errorf("no successful commands on %s: %v; api logs:\n%s", sd.name, m.Closed.Sum[k].FirstError, b.apiLog())
		}
	}
	m.Half = m.api().Throughput / 2
	o := b.openLoop(ctx, m.Half)
	m.Fixed, m.SingleFixed, m.RawFixed, m.FloorFixed = o.API, o.Single, o.Raw, o.Floor
	m.FixedCPU = [2]float64{cpuPerOp(o.APITicks, o.API.Ops), cpuPerOp(o.FloorTicks, o.Floor.Ops)}
	fmt.Println("api at 50% of max (open):        ", m.Fixed)
	fmt.Println("api GROUP_COMMIT=false, same rate:", m.SingleFixed)
	fmt.Println("raw at the same rate:            ", m.RawFixed)
	fmt.Println("floor at the same rate:          ", m.FloorFixed)
	m.FloorAtMax, m.FloorAtMaxCPU = b.floorAt(ctx, m.api().Throughput)
	fmt.Printf("floor at the api's maximum, %.0f/s: %v\n", m.api().Throughput, m.FloorAtMax)
	m.Load1 = procs.LoadAvg()
	m.print(sides)
	path, err := result.Save(m.result(s, started))
	if err != nil {
		return fmt.Errorf("saving result: %w", err)
	}
	fmt.Println("result:", path)
	return nil
}
