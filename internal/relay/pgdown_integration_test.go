//go:build integration

package relay

import (
	"context"
	"net/url"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"cqrsflow/internal/outbox"
	"cqrsflow/internal/testenv"
)

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
	proxy := testenv.NewProxy(t, u.Host)
	u.Host = proxy.Addr()
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
	proxy.Cut()
	time.Sleep(2 * time.Second)
	before := outboxCount(ctx, t, e.pg.Pool)
	time.Sleep(4 * time.Second)
	during := outboxCount(ctx, t, e.pg.Pool)
	proxy.Restore()
	if during <= before {
		t.Fatalf("backlog did not grow while PostgreSQL was unreachable for the relay (%d → %d)", before, during)
	}
	if n := len(r.Owned()); n != 0 && n != outbox.ShardCount {
		t.Logf("owned shards after the outage: %d", n)
	}
	want := <-written
	waitFor(t, "outbox drained after PostgreSQL returned", 2*time.Minute, func() bool { return outboxCount(ctx, t, e.pg.Pool) == 0 })
	recs := consumeAll(t, e.brokers, e.topics, total(want), time.Minute)
	dups := checkStream(t, recs, want)
	t.Logf("backlog %d → %d during the outage; %d records, %d duplicates", before, during, len(recs), dups)
}
