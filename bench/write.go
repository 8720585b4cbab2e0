package main

// The write part (issue 3): closed-loop load on the real api binary
// (64 clients, mixed creates/updates of products) against, in the same run,
// a raw pgx baseline that runs the same SQL transaction (eventstore.Execute:
// lock head row, load, append events + outbox, notify, commit) directly with
// the same concurrency and pool size; then an open-loop phase at 50% of the
// API's measured maximum, with latency measured from the intended send time.
// The two sides run in alternating slices so machine noise hits both alike.
// Everything runs in a private schema of the local PostgreSQL (dropped
// afterwards) and on 127.0.0.1 only.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"cqrsflow/internal/config"
	"cqrsflow/internal/envelope"
	"cqrsflow/internal/eventstore"
	"cqrsflow/internal/loadgen"
	"cqrsflow/internal/migrations"
	"cqrsflow/internal/testenv"
)

func init() { parts["write"] = runWrite }

type writeBench struct {
	baseURL     string // api base URL
	key         string
	client      *http.Client
	store       *eventstore.Store
	ids         []string // seeded products the updates target
	updateShare float64
}

func runWrite(ctx context.Context, args []string) error {
	quick := quickMode()
	fs := flag.NewFlagSet("bench write", flag.ContinueOnError)
	pgURL := fs.String("postgres-url", envDefault("POSTGRES_URL", config.DefaultPostgresURL), "PostgreSQL URL (a private schema is created and dropped)")
	apiBin := fs.String("api-bin", "", "api binary (default: go build ./api into a temp dir)")
	dur := fs.Duration("duration", pick(quick, 6*time.Second, 20*time.Second), "closed-loop duration of each side")
	slices := fs.Int("slices", 4, "the closed-loop duration is run in this many alternating api/raw slices")
	fixedDur := fs.Duration("fixed-duration", pick(quick, 6*time.Second, 16*time.Second), "open-loop duration at 50% of the API maximum (per side)")
	clients := fs.Int("clients", 64, "concurrent clients (closed loop)")
	products := fs.Int("products", 2000, "products seeded for the updates")
	updateShare := fs.Float64("update-share", 0.5, "share of updates in the mix (rest: creates)")
	maxConns := fs.Int("max-conns", 16, "PostgreSQL pool size of the api and of the baseline")
	verbose := fs.Bool("v", false, "print every slice")
	logLevel := fs.String("log-level", "info", "api LOG_LEVEL (info writes one access log line per request)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *slices < 1 || *clients < 1 || *dur <= 0 || *fixedDur <= 0 {
		return errors.New("-slices, -clients, -duration and -fixed-duration must be > 0")
	}
	started := time.Now()
	tmp, err := os.MkdirTemp("", "cqrsflow-bench-write-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	// Private schema, migrated.
	admin, err := pgx.Connect(ctx, *pgURL)
	if err != nil {
		return fmt.Errorf("connecting to PostgreSQL at %s (run `make up`): %w", config.MaskURL(*pgURL), err)
	}
	defer admin.Close(context.Background())
	schema := "bench_write_" + randHex(4)
	if _, err := admin.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		return fmt.Errorf("creating schema: %w", err)
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := admin.Exec(cctx, "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			fmt.Fprintln(os.Stderr, "bench write: dropping schema", schema+":", err)
		}
	}()
	url, err := testenv.WithSearchPath(*pgURL, schema)
	if err != nil {
		return err
	}
	if err := migrations.Up(ctx, url); err != nil {
		return err
	}

	if *apiBin == "" {
		*apiBin = filepath.Join(tmp, "api")
		build := exec.CommandContext(ctx, "go", "build", "-o", *apiBin, "./api")
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			return fmt.Errorf("building the api: %w", err)
		}
	}
	addr, err := freeAddr()
	if err != nil {
		return err
	}
	key := randHex(20)
	api, err := startProc("api", *apiBin, nil, []string{
		"POSTGRES_URL=" + url, "HTTP_ADDR=" + addr, "API_KEYS=bench:" + key, "API_KEYS_FILE=",
		"RATE_LIMIT_RPS=0", "MIGRATE_ON_START=false", "LOG_LEVEL=" + *logLevel,
		fmt.Sprintf("POSTGRES_MAX_CONNS=%d", *maxConns),
	}, addr, filepath.Join(tmp, "api.log"))
	if err != nil {
		return err
	}
	defer func() {
		if err := api.stop(10 * time.Second); err != nil {
			fmt.Fprintln(os.Stderr, "bench write:", err)
		}
	}()

	pcfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return err
	}
	pcfg.MaxConns = int32(*maxConns)
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return err
	}
	defer pool.Close()

	store := eventstore.New(pool)
	defer store.Close()
	tr := &http.Transport{MaxIdleConns: 4 * *clients, MaxIdleConnsPerHost: 4 * *clients, IdleConnTimeout: time.Minute}
	wb := &writeBench{baseURL: "http://" + addr, key: key, client: &http.Client{Transport: tr, Timeout: 30 * time.Second},
		store: store, updateShare: *updateShare}
	if err := wb.waitAPI(ctx, api, 30*time.Second); err != nil {
		return err
	}
	if err := wb.seed(ctx, *products); err != nil {
		return err
	}

	fmt.Printf("bench write: %d clients, %v per side, %.0f%% updates, pool %d conns, %d CPUs, api LOG_LEVEL=%s\n",
		*clients, *dur, 100**updateShare, *maxConns, runtime.NumCPU(), *logLevel)
	load0 := loadAvg()
	warm := pick(quick, time.Second, 3*time.Second)
	loadgen.ClosedLoop(ctx, *clients, warm, wb.apiOp)
	loadgen.ClosedLoop(ctx, *clients, warm, wb.rawOp)
	// The two sides alternate in slices (api, raw, raw, api, …) so that a
	// burst of other work on the machine hits both alike.
	var apiRuns, rawRuns []loadgen.Summary
	var apiCPU int64 // CPU ticks the api process used during its slices
	slice := *dur / time.Duration(*slices)
	for i := range *slices {
		first, second := wb.apiOp, wb.rawOp
		if i%2 == 1 {
			first, second = second, first
		}
		t0 := apiTicks(api)
		a := loadgen.ClosedLoop(ctx, *clients, slice, first)
		t1 := apiTicks(api)
		b := loadgen.ClosedLoop(ctx, *clients, slice, second)
		t2 := apiTicks(api)
		if i%2 == 1 {
			a, b = b, a
			apiCPU += t2 - t1
		} else {
			apiCPU += t1 - t0
		}
		apiRuns, rawRuns = append(apiRuns, a), append(rawRuns, b)
	}
	if *verbose {
		for i := range apiRuns {
			fmt.Printf("  slice %d: api %v\n           raw %v\n", i, apiRuns[i], rawRuns[i])
		}
	}
	apiRes, rawRes := loadgen.Combine(apiRuns...), loadgen.Combine(rawRuns...)
	fmt.Println("api (HTTP, closed loop):  ", apiRes)
	fmt.Println("raw pgx (same SQL):       ", rawRes)
	apiCPUus := 0.0
	if apiRes.Ops > 0 {
		apiCPUus = float64(apiCPU) / clockTicks * 1e6 / float64(apiRes.Ops)
		fmt.Printf("api process CPU: %.0f µs per command (%.2f cores)\n", apiCPUus, float64(apiCPU)/clockTicks/apiRes.Elapsed.Seconds())
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if apiRes.Ops == 0 || rawRes.Ops == 0 {
		return fmt.Errorf("no successful commands (api: %v; raw: %v); api log:\n%s", apiRes.FirstError, rawRes.FirstError, tail(api.LogPath, 15))
	}
	half := apiRes.Throughput / 2
	// The closed loop leaves PostgreSQL with a backlog of dirty pages;
	// flushed during the open loop it stalled commits and gave its first
	// 8-16 s p99s of 42-165 ms against 5-8 ms for the rest. A CHECKPOINT
	// here starts both sides from the same, settled state (regular
	// checkpoints can still fall into the phase).
	if _, err := pool.Exec(ctx, "CHECKPOINT"); err != nil {
		fmt.Println("CHECKPOINT before the open loop failed (the first slices may carry the closed loop's flush):", err)
	}
	// The baseline at the same rate separates the API's own tail from the
	// machine's (other processes, checkpoints, autovacuum); slices alternate.
	var fixedRuns, rawFixedRuns []loadgen.Summary
	fslice := *fixedDur / time.Duration(*slices)
	for i := range *slices {
		if i%2 == 0 {
			fixedRuns = append(fixedRuns, loadgen.OpenLoop(ctx, half, fslice, 4**clients, wb.apiOp))
			rawFixedRuns = append(rawFixedRuns, loadgen.OpenLoop(ctx, half, fslice, 4**clients, wb.rawOp))
		} else {
			rawFixedRuns = append(rawFixedRuns, loadgen.OpenLoop(ctx, half, fslice, 4**clients, wb.rawOp))
			fixedRuns = append(fixedRuns, loadgen.OpenLoop(ctx, half, fslice, 4**clients, wb.apiOp))
		}
	}
	if *verbose {
		for i := range fixedRuns {
			fmt.Printf("  slice %d: api %v\n           raw %v\n", i, fixedRuns[i], rawFixedRuns[i])
		}
	}
	fixed, rawFixed := loadgen.Combine(fixedRuns...), loadgen.Combine(rawFixedRuns...)
	fmt.Println("api at 50% of max (open): ", fixed)
	fmt.Println("raw at the same rate:     ", rawFixed)

	load1 := loadAvg()
	fmt.Printf("1-min load average: %s at start, %s at end (other processes on the machine skew the numbers)\n", load0, load1)
	ratio := apiRes.Throughput / rawRes.Throughput
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	fmt.Println()
	fmt.Printf("%-34s %12s %12s\n", "", "api", "raw pgx")
	fmt.Printf("%-34s %12.0f %12.0f\n", "throughput (commands/s)", apiRes.Throughput, rawRes.Throughput)
	fmt.Printf("%-34s %12.2f %12.2f\n", "p50 latency (ms)", ms(apiRes.P50), ms(rawRes.P50))
	fmt.Printf("%-34s %12.2f %12.2f\n", "p99 latency (ms)", ms(apiRes.P99), ms(rawRes.P99))
	fmt.Printf("%-34s %12d %12d\n", "errors", apiRes.Errors, rawRes.Errors)
	fmt.Printf("ratio api/raw: %.2f (target >= 0.60: %s)\n", ratio, passWord(ratio >= 0.6))
	fixedOK := fixed.P99 < 50*time.Millisecond && fixed.Errors == 0
	fmt.Printf("p99 at %.0f commands/s (50%% of max, open loop): %.2f ms, p50 %.2f ms, %d errors (target p99 < 50 ms: %s); raw pgx at the same rate: p99 %.2f ms, p50 %.2f ms\n",
		half, ms(fixed.P99), ms(fixed.P50), fixed.Errors, passWord(fixedOK), ms(rawFixed.P99), ms(rawFixed.P50))

	res := Result{Part: "write", Quick: quick, StartedAt: started, Seconds: time.Since(started).Seconds(),
		Rows: []Row{
			Row{Name: fmt.Sprintf("api mixed commands, %d clients", *clients), Value: apiRes.Throughput, Unit: "cmd/s"}.
				WithBaseline("raw pgx, same transaction", rawRes.Throughput).WithTarget("ratio ≥ 0.6", ratio >= 0.6),
			Row{Name: fmt.Sprintf("api p50 latency, %d clients", *clients), Value: ms(apiRes.P50), Unit: "ms"}.
				WithBaseline("raw pgx, same transaction", ms(rawRes.P50)),
			Row{Name: fmt.Sprintf("api p99 latency, %d clients", *clients), Value: ms(apiRes.P99), Unit: "ms"}.
				WithBaseline("raw pgx, same transaction", ms(rawRes.P99)),
			Row{Name: fmt.Sprintf("api p99 at 50%% of max (%.0f cmd/s, open loop)", half), Value: ms(fixed.P99), Unit: "ms"}.
				WithBaseline("raw pgx at the same rate", ms(rawFixed.P99)).WithTarget("p99 < 50 ms", fixedOK),
		},
		Tables: []Table{{
			Title:   "write side: API vs raw pgx",
			Columns: []string{"run", "commands/s", "p50 ms", "p99 ms", "p99.9 ms", "errors"},
			Rows: [][]string{
				writeRow("api, closed loop", apiRes),
				writeRow("raw pgx, closed loop", rawRes),
				writeRow(fmt.Sprintf("api, open loop %.0f/s", half), fixed),
				writeRow(fmt.Sprintf("raw pgx, open loop %.0f/s", half), rawFixed),
			},
		}},
		Notes: []string{fmt.Sprintf("1-min load average %s at start, %s at end; api process CPU %.0f µs per command", load0, load1, apiCPUus), fmt.Sprintf("%d clients, %v per side, %.0f%% updates / %.0f%% creates of products, pool %d, %d CPUs, api LOG_LEVEL=%s; the baseline calls eventstore.Execute in-process (same SQL, no HTTP/JSON/validation)",
			*clients, *dur, 100**updateShare, 100-100**updateShare, *maxConns, runtime.NumCPU(), *logLevel)},
	}
	if path, err := saveResult(resultsDir(), res); err != nil {
		fmt.Fprintln(os.Stderr, "bench write: saving result:", err)
	} else {
		fmt.Println("result:", path)
	}
	return nil
}

// apiTicks is the CPU time (utime+stime, clock ticks) of the api process.
func apiTicks(p *proc) int64 {
	st, err := readStat(p.Pid())
	if err != nil {
		return 0
	}
	return st.CPUTicks
}

// loadAvg is the 1-minute load average from /proc/loadavg ("?" if unknown).
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return "?"
	}
	return f[0]
}

func writeRow(name string, s loadgen.Summary) []string {
	ms := func(d time.Duration) string { return fmt.Sprintf("%.2f", float64(d)/float64(time.Millisecond)) }
	return []string{name, fmt.Sprintf("%.0f", s.Throughput), ms(s.P50), ms(s.P99), ms(s.P999), fmt.Sprint(s.Errors)}
}

func passWord(ok bool) string {
	if ok {
		return "PASS"
	}
	return "MISS"
}

func pick(quick bool, q, full time.Duration) time.Duration {
	if quick {
		return q
	}
	return full
}

func envDefault(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// waitAPI waits until the api answers /healthz and accepts a write (its
// /readyz also checks Elasticsearch, which this part does not need).
func (wb *writeBench) waitAPI(ctx context.Context, p *proc, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		if ok, err := p.exited(); ok {
			return fmt.Errorf("api exited (%v); log:\n%s", err, tail(p.LogPath, 15))
		}
		if last = wb.create(ctx); last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return fmt.Errorf("api not ready after %v: %v; log:\n%s", timeout, last, tail(p.LogPath, 15))
}

// seed creates the products the updates target, through the store.
func (wb *writeBench) seed(ctx context.Context, n int) error {
	wb.ids = make([]string, n)
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for w := range 8 {
		wg.Go(func() {
			for i := w; i < n; i += 8 {
				wb.ids[i] = uuid.NewString()
				if _, err := wb.store.Create(ctx, "product", wb.ids[i], []eventstore.NewEvent{productEvent("ProductCreated", i)}); err != nil {
					errs[w] = err
					return
				}
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

func productBody(i int) string {
	return fmt.Sprintf(`{"name":"bench product %d","description":"a product created by the write benchmark","price":%d.%02d,"stock":%d}`,
		i, i%1000, i%100, i%50)
}

func productEvent(typ string, i int) eventstore.NewEvent {
	return eventstore.NewEvent{Type: typ, SchemaVersion: 1, Payload: json.RawMessage(productBody(i))}
}

func (wb *writeBench) do(ctx context.Context, method, path, body string, want int) error {
	req, err := http.NewRequestWithContext(ctx, method, wb.baseURL+path, strings.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+wb.key)
	res, err := wb.client.Do(req)
	if err != nil {
		return err
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != want {
		return fmt.Errorf("%s %s: %d %s", method, path, res.StatusCode, b)
	}
	return nil
}

func (wb *writeBench) create(ctx context.Context) error {
	return wb.do(ctx, "POST", "/v1/products", productBody(mrand.IntN(1_000_000)), http.StatusCreated)
}

// apiOp is one command over HTTP: an update of a random seeded product
// (no expected version, so no conflicts) or a create.
func (wb *writeBench) apiOp(ctx context.Context, _ int) error {
	if mrand.Float64() < wb.updateShare {
		return wb.do(ctx, "PUT", "/v1/products/"+wb.ids[mrand.IntN(len(wb.ids))], productBody(mrand.IntN(1_000_000)), http.StatusOK)
	}
	return wb.create(ctx)
}

// rawOp is the same command straight on the store: the same SQL
// transaction without HTTP, JSON decoding, validation or auth.
func (wb *writeBench) rawOp(ctx context.Context, _ int) error {
	meta := envelope.Metadata{CorrelationID: uuid.NewString(), Principal: "bench"}
	meta.RequestID = meta.CorrelationID
	i := mrand.IntN(1_000_000)
	if mrand.Float64() < wb.updateShare {
		_, err := wb.store.Execute(ctx, eventstore.Command{AggregateType: "product", AggregateID: wb.ids[mrand.IntN(len(wb.ids))],
			ExpectedVersion: eventstore.AnyVersion, Metadata: meta,
			Decide: func([]eventstore.Event) ([]eventstore.NewEvent, error) {
				return []eventstore.NewEvent{productEvent("ProductUpdated", i)}, nil
			}})
		return err
	}
	_, err := wb.store.Execute(ctx, eventstore.Command{AggregateType: "product", AggregateID: uuid.NewString(),
		ExpectedVersion: eventstore.NoAggregate, Metadata: meta,
		Decide: func([]eventstore.Event) ([]eventstore.NewEvent, error) {
			return []eventstore.NewEvent{productEvent("ProductCreated", i)}, nil
		}})
	return err
}
