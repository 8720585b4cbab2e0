package read

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/elastic/go-elasticsearch/v8"
	"github.com/google/uuid"

	"cqrsflow/bench/internal/procs"
	"cqrsflow/internal/config"
	"cqrsflow/internal/domain/product"
	"cqrsflow/internal/envelope"
	"cqrsflow/internal/esindex"
	"cqrsflow/internal/projection/products"
	"cqrsflow/internal/projector"
	"cqrsflow/internal/testenv"
	"cqrsflow/internal/testenv/binary"
)

// bench is one run's private index, the api process reading it and the
// load generator's HTTP client.
type bench struct {
	s      settings
	tmp    string
	prefix string // of the run's index and alias
	alias  string // what the api reads and the direct requests name
	es     *elasticsearch.Client
	made   bool // the index exists and must be deleted
	api    *binary.Process
	apiURL string
	hop    *binary.Process // the floor (see bench/internal/hop); nil without -hop
	key    string
	client *http.Client
	ids    []string // the prefilled products
	esPid  int      // the local node's process, for its CPU (0: unknown)
}

// setup creates and fills the index, starts the api and checks both
// answer. On failure it removes what it made.
func setup(ctx context.Context, s settings) (*bench, error) {
	b := &bench{s: s, key: testenv.RandomHex(20), prefix: "bench-read-" + testenv.RandomHex(4) + "-"}
	if err := b.start(ctx); err != nil {
		b.cleanup()
		return nil, err
	}
	return b, nil
}

func (b *bench) start(ctx context.Context) error {
	tmp, err := os.MkdirTemp("", "cqrsflow-bench-read-")
	if err != nil {
		return err
	}
	b.tmp = tmp
	if b.es, err = esindex.New(b.s.ElasticsearchURL); err != nil {
		return err
	}
	if err := esindex.Ping(ctx, b.es); err != nil {
		return fmt.Errorf("elasticsearch at %s (run `make up`): %w", b.s.ElasticsearchURL, err)
	}
	b.made = true
	if b.alias, err = projector.EnsureReadModel(ctx, b.es, b.prefix, products.Projection); err != nil {
		return err
	}
	if err := b.prefill(ctx); err != nil {
		return err
	}
	for _, g := range procs.StackGroups(config.StateDir()) {
		if g.Name == "elasticsearch" {
			b.esPid = g.Pid
		}
	}
	// One client for both sides: the same connection pool size, no gzip
	// (Elasticsearch compresses when asked; the api never does), the
	// same per-request work in this process.
	b.client = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		MaxIdleConns: 4 * b.s.Clients, MaxIdleConnsPerHost: 2 * b.s.Clients, IdleConnTimeout: time.Minute, DisableCompression: true,
	}}
	if err := b.startAPI(ctx); err != nil {
		return err
	}
	if b.s.Hop {
		return b.startHop(ctx)
	}
	return nil
}

// prefill indexes the products as the projector writes them (a
// ProductCreated folded by the products projection, external version 1),
// with distinct creation times so the list's order is total.
func (b *bench) prefill(ctx context.Context) error {
	t0 := time.Now()
	index := esindex.IndexName(b.prefix, products.Projection.Name(), 1)
	adjectives := []string{"red", "wooden", "large", "quiet", "steel", "soft", "smart", "vintage"}
	ops := make([]esindex.Op, 0, b.s.Products)
	b.ids = make([]string, b.s.Products)
	for i := range b.s.Products {
		id := uuid.NewString()
		b.ids[i] = id
		adj := adjectives[i%len(adjectives)]
		payload := fmt.Sprintf(`{"name":"Item %d %s","description":"a %s item of the read benchmark, number %d, with a few more words to search","price":%d.%02d,"currency":"EUR","stock":%d}`,
			i, adj, adj, i, i%1000, i%100, i%50)
		at := t0.Add(time.Duration(i) * time.Millisecond).UTC()
		doc, err := products.Apply(nil, &envelope.Envelope{EventID: uuid.NewString(), EventType: products.Created,
			SchemaVersion: product.SchemaVersion(product.EventCreated),
			AggregateType: "product", AggregateID: id, Version: 1, OccurredAt: at, RecordedAt: at, GlobalPosition: int64(i + 1),
			Payload: json.RawMessage(payload)})
		if err != nil {
			return fmt.Errorf("building product %d: %w", i, err)
		}
		src, err := json.Marshal(doc)
		if err != nil {
			return err
		}
		ops = append(ops, esindex.Op{Index: index, ID: id, Version: 1, Doc: src})
	}
	res, err := esindex.Bulk(ctx, b.es, ops, "")
	if err != nil {
		return fmt.Errorf("prefilling %s: %w", index, err)
	}
	for i, r := range res {
		if r.Err != "" {
			return fmt.Errorf("prefilling %s: product %d: %s", index, i, r.Err)
		}
	}
	if err := esindex.Refresh(ctx, b.es, index); err != nil {
		return err
	}
	fmt.Printf("prefilled %d products into %s in %.1fs\n", b.s.Products, index, time.Since(t0).Seconds())
	return nil
}

// startAPI builds the api unless -api-bin names one, and starts it on a
// free loopback port reading the run's index, with a read-only key and
// the per-principal limit off (the load comes from one principal).
func (b *bench) startAPI(ctx context.Context) error {
	bin := b.s.APIBin
	if bin == "" {
		if err := binary.Build(ctx, "", b.tmp, "cqrsflow/api"); err != nil {
			return fmt.Errorf("building the api: %w", err)
		}
		bin = filepath.Join(b.tmp, "api")
	}
	addr, err := testenv.LoopbackAddr()
	if err != nil {
		return err
	}
	b.apiURL = "http://" + addr
	b.api, err = binary.Start(binary.Spec{Name: "api", Bin: bin, Addr: addr, LogPath: filepath.Join(b.tmp, "api.log"), Env: []string{
		"POSTGRES_URL=" + b.s.PostgresURL, "ELASTICSEARCH_URL=" + b.s.ElasticsearchURL, "INDEX_PREFIX=" + b.prefix,
		"HTTP_ADDR=" + addr, "API_KEYS=bench:" + b.key + ":read", "API_KEYS_FILE=",
		"RATE_LIMIT_RPS=0", "MIGRATE_ON_START=false", "LOG_LEVEL=" + b.s.LogLevel,
	}})
	if err != nil {
		return err
	}
	return b.api.WaitReady(ctx, 30*time.Second)
}

// startHop builds the floor forwarder and starts it on a free loopback
// port in front of Elasticsearch.
func (b *bench) startHop(ctx context.Context) error {
	if err := binary.Build(ctx, "", b.tmp, "cqrsflow/bench/internal/hop"); err != nil {
		return fmt.Errorf("building the hop: %w", err)
	}
	addr, err := testenv.LoopbackAddr()
	if err != nil {
		return err
	}
	b.hop, err = binary.Start(binary.Spec{Name: "hop", Bin: filepath.Join(b.tmp, "hop"), Addr: addr,
		Args: []string{"-addr", addr, "-target", b.s.ElasticsearchURL}, LogPath: filepath.Join(b.tmp, "hop.log")})
	if err != nil {
		return err
	}
	return b.hop.WaitReady(ctx, 30*time.Second)
}

// apiLog is the end of the api's log, for error messages.
func (b *bench) apiLog() string { return binary.Tail(b.api.LogPath, 15) }

// cleanup stops the api and deletes the index; it runs with its own
// deadline, so also after the run's context was cancelled. Failures are
// printed: the measurement is done by then.
func (b *bench) cleanup() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, p := range []*binary.Process{b.api, b.hop} {
		if p == nil {
			continue
		}
		if err := p.Stop(10 * time.Second); err != nil {
			fmt.Fprintln(os.Stderr, "bench read:", err)
		}
	}
	if b.made {
		if err := testenv.RemoveIndices(ctx, b.es, b.prefix+"*"); err != nil {
			fmt.Fprintln(os.Stderr, "bench read: deleting the index:", err)
		}
	}
	if b.client != nil {
		b.client.CloseIdleConnections()
	}
	if b.tmp != "" {
		_ = os.RemoveAll(b.tmp)
	}
}
