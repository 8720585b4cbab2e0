package query

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/elastic/go-elasticsearch/v8"
	"github.com/elastic/go-elasticsearch/v8/esapi"
	"github.com/prometheus/client_golang/prometheus"

	"cqrsflow/internal/esindex"
	"cqrsflow/internal/obs"
)

// Reads that arrive together go to Elasticsearch together: the gets by id
// in flight at once become one _mget, the searches one _msearch. On two
// shared cores Elasticsearch spends most of a single GET or _search on
// the HTTP request around it (measured with 32 clients: ~340 µs of its
// CPU per GET, ~70 µs per document of an _mget of 8), and the api pays
// one HTTP exchange per batch instead of one per read.
//
// A coalescer has Slots requests to Elasticsearch in flight at most. A
// read that finds nothing in flight is sent at once, alone, by the
// goroutine that asked for it: an idle api adds no wait. The reads that
// arrive meanwhile queue; the next slot to free up takes up to MaxBatch of
// them, oldest first, and a further slot opens beside a batch in flight
// only for a queue of MaxBatch/8 or more (mayStartLocked). So batches grow
// with the load and nothing waits longer than one batch ahead of it.
//
// Each read keeps its own outcome. A document that is missing, an index
// that is missing, or a search Elasticsearch refuses answers that read
// alone; only a failure of the whole request (connection, 429, 5xx, an
// answer that is not JSON or not one part per read) fails its batch, as
// it would have failed each read sent alone. A batch runs under its own
// timeout, not under any one caller's context: a client that hangs up
// leaves the batch to the others and gets its context's error at once.

// BatchConfig says which reads are coalesced and bounds the batches
// (api: READ_BATCH_*).
type BatchConfig struct {
	// Gets coalesces the gets by id into _mget requests.
	Gets bool
	// Searches coalesces the searches and lists into _msearch requests.
	// Off by default: a search's cost is mostly its execution in
	// Elasticsearch, which a batch does not share (BENCHMARKS.md, "Reads
	// sent together"); cheap, selective searches gain from it.
	Searches bool
	// MaxBatch is the most reads in one _mget or _msearch; 1 sends every
	// read alone (through the same queue).
	MaxBatch int
	// Slots is how many requests of each kind are in flight to
	// Elasticsearch at once.
	Slots int
}

// DefaultBatchConfig is the api's default: gets coalesced, up to two
// requests in flight (the second only for a queue of 8 or more), up to
// 64 reads in each.
func DefaultBatchConfig() BatchConfig {
	return BatchConfig{Gets: true, MaxBatch: 64, Slots: 2}
}

// Validate names each bad field.
func (c BatchConfig) Validate() error {
	var errs []error
	if c.MaxBatch < 1 || c.MaxBatch > 1024 {
		errs = append(errs, fmt.Errorf("max batch %d: must be 1..1024", c.MaxBatch))
	}
	if c.Slots < 1 || c.Slots > 256 {
		errs = append(errs, fmt.Errorf("slots %d: must be 1..256", c.Slots))
	}
	return errors.Join(errs...)
}

// errRefused: Elasticsearch refused a batch's request as a whole with a
// 4xx other than 429.
var errRefused = errors.New("refused")

// readCall is one read waiting for its part of a batch's answer.
type readCall struct {
	index string
	id    string // a get by id
	body  []byte // a search: one line of compact JSON
	ctx   context.Context
	done  chan struct{}
	part  []byte // its part of the answer, once done is closed
	err   error
}

// batchKind is what a coalescer batches.
type batchKind struct {
	name    string // label of the metrics: "get", "search"
	encode  func(b []byte, calls []*readCall) []byte
	perform func(ctx context.Context, es *elasticsearch.Client, body []byte) (*esapi.Response, error)
	parts   func(a *batchAnswer) []json.RawMessage
}

// batchAnswer is what a batch needs of an _mget or _msearch answer: its
// parts, one per read, in the order of the request.
type batchAnswer struct {
	Docs      []json.RawMessage `json:"docs"`      // _mget
	Responses []json.RawMessage `json:"responses"` // _msearch
}

var mgetKind = batchKind{
	name: "get",
	encode: func(b []byte, calls []*readCall) []byte {
		b = append(b, `{"docs":[`...)
		for i, c := range calls {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"_index":`...)
			b = appendString(b, c.index)
			b = append(b, `,"_id":`...)
			b = appendString(b, c.id)
			b = append(b, '}')
		}
		return append(b, "]}"...)
	},
	perform: func(ctx context.Context, es *elasticsearch.Client, body []byte) (*esapi.Response, error) {
		return es.Mget(bytes.NewReader(body), es.Mget.WithContext(ctx))
	},
	parts: func(a *batchAnswer) []json.RawMessage { return a.Docs },
}

var msearchKind = batchKind{
	name: "search",
	encode: func(b []byte, calls []*readCall) []byte {
		for _, c := range calls {
			b = append(b, `{"index":`...)
			b = appendString(b, c.index)
			b = append(b, "}\n"...)
			b = append(b, c.body...)
			b = append(b, '\n')
		}
		return b
	},
	perform: func(ctx context.Context, es *elasticsearch.Client, body []byte) (*esapi.Response, error) {
		return es.Msearch(bytes.NewReader(body), es.Msearch.WithContext(ctx))
	},
	parts: func(a *batchAnswer) []json.RawMessage { return a.Responses },
}

// coalescer batches the reads of one kind.
type coalescer struct {
	es        *elasticsearch.Client
	kind      batchKind
	cfg       BatchConfig
	timeout   time.Duration
	size      prometheus.Observer
	fallbacks prometheus.Counter

	mu      sync.Mutex
	pending []*readCall
	busy    int // slots in use
}

func newCoalescer(es *elasticsearch.Client, kind batchKind, cfg BatchConfig, timeout time.Duration, m *batchMetrics) *coalescer {
	return &coalescer{es: es, kind: kind, cfg: cfg, timeout: timeout,
		size: m.reads.WithLabelValues(kind.name), fallbacks: m.fallbacks.WithLabelValues(kind.name)}
}

// do queues c and returns its part of the answer: the document of an
// _mget, the response of an _msearch. An error wraps
// esindex.ErrUnavailable when Elasticsearch could not be asked or its
// answer could not be read, as for a read sent alone.
func (q *coalescer) do(ctx context.Context, c *readCall) ([]byte, error) {
	c.ctx, c.done = ctx, make(chan struct{})
	q.mu.Lock()
	q.pending = append(q.pending, c)
	var batch []*readCall
	if q.mayStartLocked(0) {
		// A slot is taken only for a batch that is not empty (c's own
		// context may be over already): a slot taken for nothing would
		// never be handed on.
		if batch = q.takeLocked(); len(batch) > 0 {
			q.busy++
		}
	}
	q.mu.Unlock()
	if len(batch) > 0 {
		// This goroutine holds a slot: it sends the oldest reads (its own
		// among them unless more than MaxBatch were queued before it),
		// then hands the slot on.
		q.run(ctx, batch)
	}
	select {
	case <-c.done:
		return c.part, c.err
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: %s %s: %w", esindex.ErrUnavailable, q.kind.name, c.index, ctx.Err())
	}
}

// mayStartLocked reports whether a batch of the queued reads may start
// now on a slot, held besides others in flight: at once when no other
// batch is in flight (an idle api adds no wait, and the last batch to end
// always takes what is queued, so no read is left behind); beside
// batches in flight only on a free slot and for a queue of at least
// MaxBatch/8 reads. Smaller queues wait for a batch in flight to end and
// go with it: a slot that took every read as it came would send many
// small batches, each costing an HTTP exchange on both sides.
func (q *coalescer) mayStartLocked(others int) bool {
	others = q.busy - others // batches in flight besides the caller's slot
	switch {
	case others == 0:
		return true
	case others >= q.cfg.Slots:
		return false
	}
	return len(q.pending) >= max(1, q.cfg.MaxBatch/8)
}

// takeLocked removes up to MaxBatch pending reads whose callers still
// wait, oldest first.
func (q *coalescer) takeLocked() []*readCall {
	var batch []*readCall
	n := 0
	for ; n < len(q.pending) && len(batch) < q.cfg.MaxBatch; n++ {
		if c := q.pending[n]; c.ctx.Err() == nil {
			batch = append(batch, c)
		}
	}
	rest := copy(q.pending, q.pending[n:])
	clear(q.pending[rest:])
	q.pending = q.pending[:rest]
	return batch
}

// next gives the caller's slot to the reads queued meanwhile (sent from a
// goroutine of their own, so the caller can answer), or frees it.
func (q *coalescer) next() {
	q.mu.Lock()
	var batch []*readCall
	if q.mayStartLocked(1) {
		batch = q.takeLocked()
	}
	if len(batch) == 0 {
		q.busy--
		q.mu.Unlock()
		return
	}
	q.mu.Unlock()
	go q.run(context.Background(), batch)
}

// run sends batch on a slot held for it, then hands the slot on.
func (q *coalescer) run(ctx context.Context, batch []*readCall) {
	defer q.next()
	q.send(ctx, batch)
}

// send makes one request of batch and gives every read its part. The
// request keeps ctx's values (the trace of the read that sends it) but
// not its cancellation: it is the batch's, bounded by the timeout.
func (q *coalescer) send(ctx context.Context, batch []*readCall) {
	q.size.Observe(float64(len(batch)))
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), q.timeout)
	defer cancel()
	parts, err := q.request(ctx, batch)
	if errors.Is(err, errRefused) && len(batch) > 1 {
		// Elasticsearch refused the request as a whole (an _msearch with
		// one body it cannot parse is a 400 for all): each read is sent
		// again alone, so the one it refuses fails alone.
		q.fallbacks.Inc()
		for _, c := range batch {
			if p, err := q.request(ctx, []*readCall{c}); err != nil {
				c.err = err
			} else {
				c.part = p[0]
			}
			close(c.done)
		}
		return
	}
	for i, c := range batch {
		if err != nil {
			c.err = err
		} else {
			c.part = parts[i]
		}
		close(c.done)
	}
}

// request sends batch as one request and splits the answer.
func (q *coalescer) request(ctx context.Context, batch []*readCall) ([]json.RawMessage, error) {
	bp := bufPool.Get().(*[]byte)
	body := q.kind.encode((*bp)[:0], batch)
	res, err := q.kind.perform(ctx, q.es, body)
	if cap(body) <= maxPooled {
		*bp = body[:0]
		bufPool.Put(bp)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %s of %d: %w", esindex.ErrUnavailable, q.kind.name, len(batch), err)
	}
	defer res.Body.Close()
	if res.IsError() {
		rb, _ := io.ReadAll(io.LimitReader(res.Body, 1024))
		err := statusError(fmt.Sprintf("%s of %d", q.kind.name, len(batch)), res.StatusCode, res.Status(), rb)
		if !errors.Is(err, esindex.ErrUnavailable) {
			err = fmt.Errorf("%w: %w", errRefused, err)
		}
		return nil, err
	}
	var a batchAnswer
	if err := decodeAnswer(res.Body, int64(len(batch))*maxAnswerBytes, &a); err != nil {
		if !errors.Is(err, esindex.ErrUnavailable) {
			err = fmt.Errorf("%w: %w", esindex.ErrUnavailable, err) // as any undecodable answer
		}
		return nil, fmt.Errorf("%s answer: %w", q.kind.name, err)
	}
	parts := q.kind.parts(&a)
	if len(parts) != len(batch) {
		return nil, fmt.Errorf("%w: %s answer: %d parts for %d reads", esindex.ErrUnavailable, q.kind.name, len(parts), len(batch))
	}
	return parts, nil
}

// batchMetrics are the coalescers' metrics (docs/architecture.md,
// Metrics), by kind.
type batchMetrics struct {
	reads     *prometheus.HistogramVec
	fallbacks *prometheus.CounterVec
}

func newBatchMetrics(reg prometheus.Registerer) (*batchMetrics, error) {
	m := &batchMetrics{
		reads: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: obs.Namespace, Name: "read_batch_reads",
			Help:    "Reads per request to Elasticsearch (kind get: one _mget; search: one _msearch); 1 when the api is idle.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 11), // 1 … 1024, the largest MaxBatch
		}, []string{"kind"}),
		fallbacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: obs.Namespace, Name: "read_batch_fallbacks_total",
			Help: "Batches of reads Elasticsearch refused as a whole (4xx); their reads were sent again one by one.",
		}, []string{"kind"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.reads, m.fallbacks} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}
