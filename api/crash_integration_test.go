//go:build integration

package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"cqrsflow/internal/testenv"
	"cqrsflow/internal/testenv/binary"
)

// TestKillDuringGroupCommit kills the api binary (kill -9) while 16
// clients write with idempotency keys, restarts it and retries every
// request with its key: an acknowledged write gets its first answer back
// (it was committed), every key ends with exactly one event, with group
// commit on (the default) and off.
func TestKillDuringGroupCommit(t *testing.T) {
	pg := testenv.Postgres(t)
	dir := t.TempDir()
	ctx := context.Background()
	if err := binary.Build(ctx, "", dir, "cqrsflow/api"); err != nil {
		t.Fatal(err)
	}
	for _, gc := range []bool{true, false} {
		t.Run(fmt.Sprintf("group_commit=%t", gc), func(t *testing.T) {
			if _, err := pg.Pool.Exec(ctx, `TRUNCATE events, outbox, aggregates, idempotency_keys`); err != nil {
				t.Fatal(err)
			}
			c := &crashClient{t: t, bin: filepath.Join(dir, "api"), url: pg.URL, gc: gc, key: "crash-test-key-0123456789",
				first: map[string]string{}}
			c.start()
			var wg sync.WaitGroup
			stop := make(chan struct{})
			for w := range 16 {
				wg.Go(func() { c.write(w, stop) })
			}
			time.Sleep(1500 * time.Millisecond)
			if err := syscall.Kill(c.proc.Pid(), syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			close(stop)
			wg.Wait()
			c.start()
			defer func() { _ = c.proc.Stop(10 * time.Second) }()
			acked := len(c.first)
			if acked == 0 {
				t.Fatal("no write was acknowledged before the kill")
			}
			for _, k := range c.keys {
				code, body, err := c.post(k)
				if err != nil || code != http.StatusCreated {
					t.Fatalf("retry of %s: %d %s %v", k, code, body, err)
				}
				if first, ok := c.first[k]; ok && first != body {
					t.Errorf("retry of acknowledged %s answered %s, first answer %s", k, body, first)
				}
			}
			var keys, events, dup int
			err := pg.Pool.QueryRow(ctx, `SELECT count(DISTINCT metadata->>'idempotency_key'), count(*),
  count(*) - count(DISTINCT metadata->>'idempotency_key') FROM events WHERE metadata ? 'idempotency_key'`).Scan(&keys, &events, &dup)
			if err != nil {
				t.Fatal(err)
			}
			if keys != len(c.keys) || dup != 0 {
				t.Errorf("%d keys sent, %d with events, %d events (%d duplicates)", len(c.keys), keys, events, dup)
			}
			t.Logf("%d writes, %d acknowledged before the kill", len(c.keys), acked)
		})
	}
}

type crashClient struct {
	t    *testing.T
	bin  string
	url  string
	gc   bool
	key  string
	proc *binary.Process
	addr string

	mu    sync.Mutex
	keys  []string          // every key sent
	first map[string]string // acknowledged before the kill: key → body
}

func (c *crashClient) start() {
	c.t.Helper()
	c.addr = testenv.FreeAddr(c.t)
	var err error
	c.proc, err = binary.Start(binary.Spec{Name: "api", Bin: c.bin, Addr: c.addr, LogPath: filepath.Join(c.t.TempDir(), "api.log"),
		Env: []string{"POSTGRES_URL=" + c.url, "HTTP_ADDR=" + c.addr, "API_KEYS=tester:" + c.key, "API_KEYS_FILE=",
			"RATE_LIMIT_RPS=0", "MIGRATE_ON_START=false", "LOG_LEVEL=warn", fmt.Sprintf("GROUP_COMMIT=%t", c.gc)}})
	if err != nil {
		c.t.Fatal(err)
	}
	err = c.proc.Until(context.Background(), 30*time.Second, "the api to accept a write", func() (bool, error) {
		code, body, err := c.post("")
		if err != nil || code != http.StatusCreated {
			return false, fmt.Errorf("%d %s %v", code, body, err)
		}
		return true, nil
	})
	if err != nil {
		c.t.Fatal(err)
	}
}

// post creates a product under key ("" for none); the body depends on the
// key only, so a retry is the same request.
func (c *crashClient) post(key string) (int, string, error) {
	req, err := http.NewRequest("POST", "http://"+c.addr+"/v1/products",
		strings.NewReader(fmt.Sprintf(`{"name":"crash %s","price":1,"stock":1}`, key)))
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+c.key)
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return res.StatusCode, string(b), err
}

// write sends keyed creates until stop, recording every key and the
// acknowledged answers.
func (c *crashClient) write(w int, stop <-chan struct{}) {
	for i := 0; ; i++ {
		select {
		case <-stop:
			return
		default:
		}
		k := fmt.Sprintf("w%d-%d", w, i)
		c.mu.Lock()
		c.keys = append(c.keys, k)
		c.mu.Unlock()
		code, body, err := c.post(k)
		if err != nil {
			return // the api is gone
		}
		if code == http.StatusCreated {
			c.mu.Lock()
			c.first[k] = body
			c.mu.Unlock()
		}
	}
}
