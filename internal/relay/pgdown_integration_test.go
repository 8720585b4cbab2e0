//go:build integration

package relay

import (
	"context"
	"io"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"cqrsflow/internal/testenv"
)

// tcpProxy forwards 127.0.0.1:<port> to target; cut() drops every
// connection and refuses new ones until restore().
type tcpProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	down   bool
	conns  map[net.Conn]bool
}

func newTCPProxy(t *testing.T, target string) *tcpProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpProxy{ln: ln, target: target, conns: map[net.Conn]bool{}}
	t.Cleanup(func() { ln.Close(); p.cut() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			down := p.down
			p.mu.Unlock()
			if down {
				c.Close()
				continue
			}
			go p.serve(c)
		}
	}()
	return p
}

func (p *tcpProxy) serve(c net.Conn) {
	u, err := net.Dial("tcp", p.target)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	p.conns[c], p.conns[u] = true, true
	p.mu.Unlock()
	go func() { _, _ = io.Copy(u, c); u.Close(); c.Close() }()
	_, _ = io.Copy(c, u)
	c.Close()
	u.Close()
}

func (p *tcpProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	for c := range p.conns {
		c.Close()
	}
	p.conns = map[net.Conn]bool{}
}

func (p *tcpProxy) restore() {
	p.mu.Lock()
	p.down = false
	p.mu.Unlock()
}

// PostgreSQL unreachable for the relay (its connections cut by a proxy)
// for 6 s while writers keep appending directly: the relay retries, and
// once PostgreSQL is back everything is published in order per key.
func TestPostgresOutageRetries(t *testing.T) {
	e := newEnv(t, testenv.KafkaBrokers())
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	u, err := url.Parse(e.pg.URL)
	if err != nil {
		t.Fatal(err)
	}
	proxy := newTCPProxy(t, u.Host)
	u.Host = proxy.ln.Addr().String()
	pcfg, err := pgxpool.ParseConfig(u.String())
	if err != nil {
		t.Fatal(err)
	}
	pcfg.ConnConfig.ConnectTimeout = 2 * time.Second
	relayPool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(relayPool.Close)
	viaProxy := &itEnv{pg: &testenv.PG{Pool: relayPool, URL: u.String(), Schema: e.pg.Schema}, prefix: e.prefix, brokers: e.brokers, adm: e.adm, topics: e.topics}
	r := startRelay(t, viaProxy, "r1", func(c *Config) { c.MaxBackoff = 500 * time.Millisecond }, 0)

	aggs := newAggregates(50)
	written := make(chan map[string]int64, 1)
	go func() { written <- writeConcurrently(ctx, t, e.pg.Pool, aggs, 1500, 2, 5*time.Millisecond) }()
	time.Sleep(2 * time.Second)
	proxy.cut()
	time.Sleep(2 * time.Second)
	before := outboxCount(ctx, t, e.pg.Pool)
	time.Sleep(4 * time.Second)
	during := outboxCount(ctx, t, e.pg.Pool)
	proxy.restore()
	if during <= before {
		t.Fatalf("backlog did not grow while PostgreSQL was unreachable for the relay (%d → %d)", before, during)
	}
	if n := len(r.Owned()); n != 0 && n != NumShards {
		t.Logf("owned shards after the outage: %d", n)
	}
	want := <-written
	waitFor(t, "outbox drained after PostgreSQL returned", 2*time.Minute, func() bool { return outboxCount(ctx, t, e.pg.Pool) == 0 })
	recs := consumeAll(t, e.brokers, e.topics, total(want), time.Minute)
	dups := checkStream(t, recs, want)
	t.Logf("backlog %d → %d during the outage; %d records, %d duplicates", before, during, len(recs), dups)
}
