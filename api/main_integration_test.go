//go:build integration

package main

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"cqrsflow/internal/testenv"
)

// TestMigrateServeAndShutdown runs the binary's run(): `api migrate` on an
// empty schema, then the server: a write with the key, the metrics of the
// contract, and a graceful stop when the context ends.
func TestMigrateServeAndShutdown(t *testing.T) {
	ctx := context.Background()
	base := testenv.PostgresURL()
	admin, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatalf("PostgreSQL: %v (run `make up`)", err)
	}
	defer admin.Close(ctx)
	schema := testenv.Name(t)
	if _, err := admin.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = admin.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE") })
	url, err := testenv.WithSearchPath(base, schema)
	if err != nil {
		t.Fatal(err)
	}
	if err := run(ctx, []string{"migrate", "-postgres-url", url}); err != nil {
		t.Fatalf("api migrate: %v", err)
	}
	var n int
	if err := admin.QueryRow(ctx, `SELECT count(*) FROM information_schema.tables WHERE table_schema = $1
AND table_name IN ('events','outbox','aggregates','idempotency_keys')`, schema).Scan(&n); err != nil || n != 4 {
		t.Fatalf("tables after migrate: %d %v", n, err)
	}

	addr := testenv.FreeAddr(t)
	const key = "main-test-key-0123456789"
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- run(sctx, []string{"-postgres-url", url, "-http-addr", addr, "-api-keys", "tester:" + key,
			"-api-keys-file", "", "-log-level", "warn"})
	}()
	api := "http://" + addr
	deadline := time.Now().Add(20 * time.Second)
	for {
		res, err := http.Get(api + "/healthz")
		if err == nil {
			res.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("api did not start: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	req, _ := http.NewRequest("POST", api+"/v1/products", strings.NewReader(`{"name":"a","price":1,"stock":1}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+key)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 201 {
		t.Fatalf("create: %d %s", res.StatusCode, body)
	}
	res, err = http.Get(api + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(res.Body)
	res.Body.Close()
	for _, name := range []string{
		`cqrsflow_http_request_duration_seconds_bucket{code="2xx",method="POST",route="/v1/products"`,
		`cqrsflow_events_appended_total{aggregate_type="product",event_type="ProductCreated"} 1`,
		`cqrsflow_build_info{`,
	} {
		if !strings.Contains(string(metrics), name) {
			t.Errorf("/metrics lacks %s", name)
		}
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run after shutdown: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("api did not stop")
	}
	if _, err := http.Get(api + "/healthz"); err == nil {
		t.Fatal("api still answers after shutdown")
	}

	// Bad configuration is reported all at once.
	err = run(ctx, []string{"-max-body-bytes", "0", "-log-level", "loud", "-postgres-max-conns", "0"})
	if err == nil || !strings.Contains(err.Error(), "MAX_BODY_BYTES") || !strings.Contains(err.Error(), "LOG_LEVEL") ||
		!strings.Contains(err.Error(), "POSTGRES_MAX_CONNS") {
		t.Fatalf("bad config: %v", err)
	}
}
