package write

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"cqrsflow/internal/testenv"
	"cqrsflow/internal/testenv/binary"
)

// bench is one run's private schema, its two api processes (group commit
// on and off) and the in-process baselines.
type bench struct {
	s      settings
	tmp    string
	schema *testenv.Schema
	api    *apiProc // GROUP_COMMIT=true (the default)
	single *apiProc // GROUP_COMMIT=false: one transaction per command
	floor  *apiProc // the hop answering writes itself: the HTTP exchange alone
	key    string
	client *http.Client
	raw    *rawStore
	ids    []string // seeded products the updates target
}

// apiProc is one running api binary.
type apiProc struct {
	proc    *binary.Process
	baseURL string
}

// setup creates the schema, starts the api and seeds the products the
// updates target. On failure it removes what it made.
func setup(ctx context.Context, s settings) (*bench, error) {
	b := &bench{s: s, key: testenv.RandomHex(20)}
	if err := b.start(ctx); err != nil {
		b.cleanup()
		return nil, err
	}
	return b, nil
}

func (b *bench) start(ctx context.Context) error {
	tmp, err := os.MkdirTemp("", "cqrsflow-bench-write-")
	if err != nil {
		return err
	}
	b.tmp = tmp
	if b.schema, err = testenv.CreateSchema(ctx, b.s.PostgresURL, "bench_write_"+testenv.RandomHex(4)); err != nil {
		return err
	}
	if err := b.schema.Migrate(ctx); err != nil {
		return err
	}
	bin, err := b.apiBinary(ctx)
	if err != nil {
		return err
	}
	if b.api, err = b.startAPI(bin, "api", true); err != nil {
		return err
	}
	if b.single, err = b.startAPI(bin, "api-single", false); err != nil {
		return err
	}
	if b.floor, err = b.startFloor(ctx); err != nil {
		return err
	}
	if b.raw, err = openRaw(ctx, b.schema.URL, b.s.MaxConns); err != nil {
		return err
	}
	tr := &http.Transport{MaxIdleConns: 4 * b.s.Clients, MaxIdleConnsPerHost: 4 * b.s.Clients, IdleConnTimeout: time.Minute}
	b.client = &http.Client{Transport: tr, Timeout: 30 * time.Second}
	for _, a := range []*apiProc{b.api, b.single, b.floor} {
		if err := b.waitAPI(ctx, a, 30*time.Second); err != nil {
			return err
		}
	}
	b.ids, err = b.raw.seed(ctx, b.s.Products)
	return err
}

// apiBinary builds the api unless -api-bin names one.
func (b *bench) apiBinary(ctx context.Context) (string, error) {
	if b.s.APIBin != "" {
		return b.s.APIBin, nil
	}
	if err := binary.Build(ctx, "", b.tmp, "cqrsflow/api"); err != nil {
		return "", fmt.Errorf("building the api: %w", err)
	}
	return filepath.Join(b.tmp, "api"), nil
}

// startAPI starts the api on a free loopback port with the rate limiter
// off, no migrations and group commit on or off.
func (b *bench) startAPI(bin, name string, groupCommit bool) (*apiProc, error) {
	addr, err := testenv.LoopbackAddr()
	if err != nil {
		return nil, err
	}
	p, err := binary.Start(binary.Spec{Name: name, Bin: bin, Addr: addr, LogPath: filepath.Join(b.tmp, name+".log"), Env: []string{
		"POSTGRES_URL=" + b.schema.URL, "HTTP_ADDR=" + addr, "API_KEYS=bench:" + b.key, "API_KEYS_FILE=",
		"RATE_LIMIT_RPS=0", "MIGRATE_ON_START=false", "LOG_LEVEL=" + b.s.LogLevel,
		fmt.Sprintf("POSTGRES_MAX_CONNS=%d", b.s.MaxConns), fmt.Sprintf("GROUP_COMMIT=%t", groupCommit),
	}})
	if err != nil {
		return nil, err
	}
	return &apiProc{proc: p, baseURL: "http://" + addr}, nil
}

// startFloor builds and starts the hop (bench/internal/hop) answering
// every request itself: the CPU a bare net/http server spends per write
// request, without the database.
func (b *bench) startFloor(ctx context.Context) (*apiProc, error) {
	if err := binary.Build(ctx, "", b.tmp, "cqrsflow/bench/internal/hop"); err != nil {
		return nil, fmt.Errorf("building the hop: %w", err)
	}
	addr, err := testenv.LoopbackAddr()
	if err != nil {
		return nil, err
	}
	p, err := binary.Start(binary.Spec{Name: "hop", Bin: filepath.Join(b.tmp, "hop"), Addr: addr,
		Args: []string{"-addr", addr, "-answer"}, LogPath: filepath.Join(b.tmp, "hop.log")})
	if err != nil {
		return nil, err
	}
	return &apiProc{proc: p, baseURL: "http://" + addr}, nil
}

// apiLog is the end of the api logs, for error messages.
func (b *bench) apiLog() string {
	return binary.Tail(b.api.proc.LogPath, 15) + "\n" + binary.Tail(b.single.proc.LogPath, 15)
}

// cleanup stops the api and drops the schema; it runs with its own
// deadline, so also after the run's context was cancelled. Failures are
// printed: the measurement is done by then.
func (b *bench) cleanup() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, a := range []*apiProc{b.api, b.single, b.floor} {
		if a != nil {
			if err := a.proc.Stop(10 * time.Second); err != nil {
				fmt.Fprintln(os.Stderr, "bench write:", err)
			}
		}
	}
	if b.raw != nil {
		b.raw.close()
	}
	if b.schema != nil {
		if err := b.schema.Drop(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "bench write: dropping schema", b.schema.Name+":", err)
		}
	}
	if b.tmp != "" {
		_ = os.RemoveAll(b.tmp)
	}
}
