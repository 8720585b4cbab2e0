//go:build integration

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"cqrsflow/internal/testenv"
	"cqrsflow/internal/testenv/binary"
)

// TestGroupCommitAnswersEachRequest fires conflicting, illegal and valid
// writes at the api binary at once (group commit on, the default): each
// request gets its own status, the valid ones commit, and the metrics show
// that requests shared transactions.
func TestGroupCommitAnswersEachRequest(t *testing.T) {
	pg := testenv.Postgres(t)
	dir := t.TempDir()
	if err := binary.Build(context.Background(), "", dir, "cqrsflow/api"); err != nil {
		t.Fatal(err)
	}
	c := &crashClient{t: t, bin: filepath.Join(dir, "api"), url: pg.URL, gc: true, key: "gc-test-key-0123456789", first: map[string]string{}}
	c.start()
	defer func() { _ = c.proc.Stop(10 * time.Second) }()

	send := func(method, path, body string, hdr ...string) (int, string) {
		req, _ := http.NewRequest(method, "http://"+c.addr+path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+c.key)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Error(err)
			return 0, ""
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	id := func(body string) string {
		var v struct{ ID string }
		_ = json.Unmarshal([]byte(body), &v)
		return v.ID
	}
	_, pb := send("POST", "/v1/products", `{"name":"p","price":1,"stock":1}`)
	product := id(pb)
	_, ob := send("POST", "/v1/orders", fmt.Sprintf(`{"user_id":"u","product_id":%q,"quantity":1,"total_price":1}`, product))
	order := id(ob)
	if code, body := send("POST", "/v1/orders/"+order+"/cancel", `{}`); code != 200 {
		t.Fatalf("cancel: %d %s", code, body)
	}

	type call struct {
		method, path, body, ifMatch string
		want                        int
	}
	var calls []call
	for i := range 20 {
		calls = append(calls,
			call{"POST", "/v1/products", fmt.Sprintf(`{"name":"p%d","price":1,"stock":1}`, i), "", 201},
			call{"PUT", "/v1/products/" + product, `{"name":"q","price":2,"stock":2}`, "99", 409},
			call{"POST", "/v1/orders/" + order + "/pay", `{}`, "", 422},
		)
	}
	var wg sync.WaitGroup
	got := make([]int, len(calls))
	bodies := make([]string, len(calls))
	for i, cl := range calls {
		wg.Go(func() {
			var hdr []string
			if cl.ifMatch != "" {
				hdr = []string{"If-Match", cl.ifMatch}
			}
			got[i], bodies[i] = send(cl.method, cl.path, cl.body, hdr...)
		})
	}
	wg.Wait()
	for i, cl := range calls {
		if got[i] != cl.want {
			t.Errorf("%s %s: %d %s, want %d", cl.method, cl.path, got[i], bodies[i], cl.want)
		}
	}
	var created, onProduct, onOrder int
	err := pg.Pool.QueryRow(context.Background(), `SELECT count(*) FILTER (WHERE event_type = 'ProductCreated'),
  count(*) FILTER (WHERE aggregate_id = $1), count(*) FILTER (WHERE aggregate_id = $2) FROM events`, product, order).
		Scan(&created, &onProduct, &onOrder)
	if err != nil {
		t.Fatal(err)
	}
	// 21 creates (one before the burst; the start-up probes are creates too).
	if created < 21 || onProduct != 1 || onOrder != 2 {
		t.Errorf("%d products created (want >= 21), %d events on the product (want 1), %d on the order (want 2: created, cancelled)",
			created, onProduct, onOrder)
	}
	res, err := http.Get("http://" + c.addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(res.Body)
	res.Body.Close()
	sum := regexp.MustCompile(`(?m)^cqrsflow_group_commit_batch_commands_sum (\S+)$`).FindSubmatch(metrics)
	cnt := regexp.MustCompile(`(?m)^cqrsflow_group_commit_batch_commands_count (\S+)$`).FindSubmatch(metrics)
	if sum == nil || cnt == nil {
		t.Fatalf("no group commit metrics:\n%s", metrics)
	}
	s, _ := strconv.ParseFloat(string(sum[1]), 64)
	n, _ := strconv.ParseFloat(string(cnt[1]), 64)
	t.Logf("%v commands in %v transactions", s, n)
	if s < float64(len(calls)) || n >= s {
		t.Errorf("%v commands in %v transactions: no batching seen", s, n)
	}
}
