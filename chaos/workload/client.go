// Package workload is the chaos run's client side: many concurrent clients
// send random commands over a bounded set of products and orders (creates,
// updates with a right, a stale or no If-Match, deletes, legal and illegal
// order transitions, reads with min_version) and retry keyed commands with
// the same Idempotency-Key when the answer is ambiguous. Every attempt is
// recorded (history.Attempt).
//
// The operation mix of each client comes from the run's seed; which
// aggregate an operation hits and every outcome depend on timing.
package workload

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"cqrsflow/chaos/history"
)

// Config of a workload.
type Config struct {
	BaseURL       string // http://127.0.0.1:port of the api
	APIKey        string
	RunID         string // prefix of idempotency keys and request ids
	Seed          uint64
	Clients       int
	Rate          float64 // operations per second over all clients (approximate)
	MaxProducts   int     // live products at most
	MaxOpenOrders int     // orders not yet shipped or cancelled, at most
	KeyedShare    float64 // share of writes sent with an Idempotency-Key
	Timeout       time.Duration
	MaxAttempts   int // attempts of a keyed write with ambiguous answers
	Record        func(history.Attempt)
}

// Counts are running totals, for progress lines.
type Counts struct {
	Ops, Attempts, Acked, Refused, Ambiguous atomic.Int64
}

type client struct {
	cfg    Config
	n      int
	rng    *rand.Rand
	m      *model
	http   *http.Client
	counts *Counts
	ops    *atomic.Int64
}

// Run drives the clients until ctx ends, then lets the operations in
// flight finish their current attempt (no new retries) and returns.
func Run(ctx context.Context, cfg Config, counts *Counts) {
	m := newModel()
	var ops atomic.Int64
	var wg sync.WaitGroup
	for i := range cfg.Clients {
		c := &client{cfg: cfg, n: i, rng: rand.New(rand.NewPCG(cfg.Seed, uint64(i)+1)), m: m, counts: counts, ops: &ops,
			http: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 2, IdleConnTimeout: 30 * time.Second}}}
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.loop(ctx)
		}()
	}
	wg.Wait()
}

func (c *client) loop(ctx context.Context) {
	mean := float64(c.cfg.Clients) / c.cfg.Rate
	for ctx.Err() == nil {
		seq := c.ops.Add(1)
		c.run(ctx, seq, c.next(seq))
		think := time.Duration(c.rng.ExpFloat64() * mean * float64(time.Second))
		select {
		case <-ctx.Done():
		case <-time.After(min(think, 5*time.Second)):
		}
	}
}

// run sends one operation: once, or for a keyed write until a definite
// answer, MaxAttempts or the end of the workload.
func (c *client) run(stop context.Context, seq int64, o op) {
	c.counts.Ops.Add(1)
	backoff := 100 * time.Millisecond
	for n := 1; ; n++ {
		timeout := c.cfg.Timeout
		if n == 1 && o.firstTimeout > 0 {
			timeout = o.firstTimeout
		}
		a := c.attempt(seq, n, o, timeout)
		c.counts.Attempts.Add(1)
		c.m.learn(&a)
		c.cfg.Record(a)
		switch {
		case a.Status >= 200 && a.Status < 300:
			c.counts.Acked.Add(1)
			return
		case a.Definite():
			c.counts.Refused.Add(1)
			return
		}
		if o.key == "" || n >= c.cfg.MaxAttempts || stop.Err() != nil {
			c.counts.Ambiguous.Add(1)
			return
		}
		select {
		case <-stop.Done():
		case <-time.After(backoff/2 + time.Duration(c.rng.Int64N(int64(backoff)))):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// kept response headers
var keptHeaders = []string{history.HeaderReplayed, history.HeaderStale, history.HeaderModelVersion, history.HeaderETag}

// attempt sends one HTTP request. Its context is not the workload's: a
// request in flight when the workload stops runs to its own timeout.
func (c *client) attempt(seq int64, n int, o op, timeout time.Duration) history.Attempt {
	a := history.Attempt{Record: "attempt", Op: seq, N: n, Client: c.n, Type: o.typ, Aggregate: o.aggregate, ID: o.id,
		Method: o.method, Path: o.path, IfMatch: o.ifMatch, MinVersion: o.minVersion, IdemKey: o.key, Misuse: o.misuse,
		RequestID: fmt.Sprintf("%s-c%d-o%d-a%d", c.cfg.RunID, c.n, seq, n), Body: o.body}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var body io.Reader
	if o.body != nil {
		body = bytes.NewReader(o.body)
	}
	req, err := http.NewRequestWithContext(ctx, o.method, c.cfg.BaseURL+o.path, body)
	if err != nil {
		a.Err = err.Error()
		return a
	}
	req.Header.Set("X-Request-ID", a.RequestID)
	// Every route but the health checks needs a credential: the reads
	// went without one until 2026-11-28, were all answered 401, and the
	// reads invariant checked none of them.
	req.Header.Set("Authorization", "Bearer "+c.cfg.APIKey)
	if o.body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if o.key != "" {
		req.Header.Set("Idempotency-Key", o.key)
	}
	if o.ifMatch > 0 && !o.inBody {
		req.Header.Set("If-Match", fmt.Sprint(o.ifMatch))
	}
	a.Start = time.Now()
	res, err := c.http.Do(req)
	if err != nil {
		a.End = time.Now()
		a.Err = errKind(err)
		return a
	}
	b, err := io.ReadAll(io.LimitReader(res.Body, 64<<10))
	res.Body.Close()
	a.End = time.Now()
	a.Status = res.StatusCode
	if err != nil {
		// The status line arrived, the body did not: the outcome is still
		// the status's, keep what was read.
		a.Err = "reading body: " + errKind(err)
	}
	if len(b) > 4096 {
		b = b[:4096]
	}
	if len(b) > 0 && (b[0] == '{' || b[0] == '[') {
		a.Resp = b
	}
	for _, h := range keptHeaders {
		if v := res.Header.Get(h); v != "" {
			if a.Headers == nil {
				a.Headers = map[string]string{}
			}
			a.Headers[h] = v
		}
	}
	return a
}

func errKind(err error) string {
	if errors.Is(err, context.DeadlineExceeded) {
		return "timeout: " + err.Error()
	}
	return err.Error()
}
