// Package read is the read part (`bench read`): closed-loop load on the
// real api binary's read routes — product search, get by id, list — and,
// in the same run and at the same concurrency, the identical request sent
// straight to Elasticsearch (the same _search body the api sends, the
// same document GET, on the same index), and the floor: the direct
// requests through bench/internal/hop, a bare net/http forwarder, which
// shows what any Go HTTP service between client and Elasticsearch costs
// here (-hop=false leaves it out). The sides of a route run in rotating
// slices so machine noise hits all alike; the api's, the hop's,
// Elasticsearch's and the load generator's CPU are read from /proc around
// every slice, so the report says what one request costs each of them. The products live in a private index (prefilled with _bulk in
// the projector's document form, deleted afterwards) and everything runs
// on 127.0.0.1.
package read

import (
	"context"
	"flag"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"time"

	"cqrsflow/bench/internal/cli"
	"cqrsflow/bench/internal/loopback"
	"cqrsflow/bench/internal/procs"
	"cqrsflow/bench/internal/result"
	"cqrsflow/internal/config"
)

// settings are the part's flags.
type settings struct {
	ElasticsearchURL string
	PostgresURL      string // the api's /readyz checks PostgreSQL; nothing is written
	APIBin           string
	Duration         time.Duration // closed loop, per side and route
	Warmup           time.Duration // per side and route
	Slices           int
	Clients          int
	Products         int
	Query            string
	Routes           []string
	LogLevel         string
	Verbose          bool
	Quick            bool
	Hop              bool // also measure the floor (bench/internal/hop)
}

// routeNames are the routes the part knows, in the order they run.
var routeNames = []string{"search", "get", "list"}

func parseSettings(args []string) (settings, error) {
	s := settings{Quick: result.Quick()}
	fs := flag.NewFlagSet("bench read", flag.ContinueOnError)
	fs.StringVar(&s.ElasticsearchURL, "elasticsearch-url", cli.Env("ELASTICSEARCH_URL", config.DefaultElasticsearchURL), "Elasticsearch URL (a private index is created and deleted)")
	fs.StringVar(&s.PostgresURL, "postgres-url", cli.Env("POSTGRES_URL", config.DefaultPostgresURL), "PostgreSQL URL for the api's readiness check (nothing is written)")
	fs.StringVar(&s.APIBin, "api-bin", "", "api binary (default: go build ./api into a temp dir)")
	fs.DurationVar(&s.Duration, "duration", result.Pick(s.Quick, 6*time.Second, 12*time.Second), "closed-loop duration of each side of each route")
	fs.DurationVar(&s.Warmup, "warmup", result.Pick(s.Quick, time.Second, 3*time.Second), "warm-up of each side of each route (not measured)")
	// A slice must outlast the slowest answers of a loaded machine by far:
	// requests still in flight when it ends are not counted.
	fs.IntVar(&s.Slices, "slices", result.Pick(s.Quick, 2, 4), "the duration is run in this many slices, the sides' order rotating")
	fs.IntVar(&s.Clients, "clients", 32, "concurrent connections (closed loop), the same on both sides")
	fs.IntVar(&s.Products, "products", result.Pick(s.Quick, 2000, 10000), "products prefilled into the private index")
	fs.StringVar(&s.Query, "q", "item", "search text (every prefilled product matches it)")
	routes := fs.String("routes", strings.Join(routeNames, ","), "routes to measure, comma-separated: search, get, list")
	fs.StringVar(&s.LogLevel, "log-level", "info", "api LOG_LEVEL")
	fs.BoolVar(&s.Verbose, "v", false, "print every slice")
	fs.BoolVar(&s.Hop, "hop", true, "also send the direct requests through a bare Go HTTP forwarder (the floor of any service in between; needs a loopback http Elasticsearch URL)")
	if err := cli.Parse(fs, args); err != nil {
		return s, err
	}
	if s.Slices < 1 || s.Clients < 1 || s.Duration <= 0 || s.Warmup < 0 || s.Products < 1 {
		return s, cli.Usagef("-slices, -clients, -duration and -products must be > 0, -warmup >= 0")
	}
	if s.Hop {
		if _, err := loopback.HTTPTarget(s.ElasticsearchURL); err != nil {
			return s, cli.Usagef("-hop: the floor (bench/internal/hop) forwards only to a loopback http URL (http://127.0.0.1:PORT): -elasticsearch-url %v; run with -hop=false", err)
		}
	}
	if strings.TrimSpace(s.Query) == "" || len(s.Query) > 500 {
		return s, cli.Usagef("-q must be 1 to 500 bytes of text")
	}
	for _, r := range config.SplitList(*routes) {
		if !slices.Contains(routeNames, r) {
			return s, cli.Usagef("-routes: %q is not one of %s", r, strings.Join(routeNames, ", "))
		}
		if !slices.Contains(s.Routes, r) {
			s.Routes = append(s.Routes, r)
		}
	}
	if len(s.Routes) == 0 {
		return s, cli.Usagef("-routes: name at least one of %s", strings.Join(routeNames, ", "))
	}
	return s, nil
}

// Run is the read part.
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

	fmt.Printf("bench read: %d connections, %v per side and route (%d slices), %d products, routes %s, %d CPUs, api LOG_LEVEL=%s\n",
		s.Clients, s.Duration, s.Slices, s.Products, strings.Join(s.Routes, ","), runtime.NumCPU(), s.LogLevel)
	m := measurement{Load0: procs.LoadAvg()}
	for _, name := range s.Routes {
		r := b.route(name)
		if err := b.check(ctx, r); err != nil {
			return fmt.Errorf("%s: the api and Elasticsearch answer differently, so the comparison would be unfair: %w", name, err)
		}
		rm := b.measure(ctx, r)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		rm.print()
		if rm.API.Ops == 0 || rm.Direct.Ops == 0 {
			return fmt.Errorf("%s: no successful requests (api: %v; direct: %v); api log:\n%s", name, rm.API.FirstError, rm.Direct.FirstError, b.apiLog())
		}
		m.Routes = append(m.Routes, rm)
	}
	m.Load1 = procs.LoadAvg()
	m.print()
	path, err := result.Save(m.result(s, started))
	if err != nil {
		return fmt.Errorf("saving result: %w", err)
	}
	fmt.Println("result:", path)
	return nil
}
