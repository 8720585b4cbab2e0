package projector

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/elastic/go-elasticsearch/v8"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"cqrsflow/internal/backoff"
	"cqrsflow/internal/topics"
)

// Runner consumes one projection: it owns the Kafka client, polls batches
// for the processor, commits what the processor finished and handles
// rebalances.
type Runner struct {
	cfg   Config
	proj  Projection
	cl    *kgo.Client
	adm   *kadm.Client
	proc  *processor
	parts *partitions
	quar  *kafkaQuarantine
	m     *Metrics
	log   *slog.Logger

	behindSince atomic.Int64 // unix nanos when lag was first seen > 0 (lag.go)
	// assigned is set when partitions were assigned: before handling
	// their records the worker reads the quarantine topic to its end, so
	// a new owner knows the aggregates the previous one quarantined.
	assigned atomic.Bool
	// consuming is set while Run consumes (past its set-up).
	consuming atomic.Bool
	// owned are the partitions assigned now: the continuous verification
	// verifies their aggregates.
	owned ownedParts
}

// New builds a Runner writing to cfg.Index on es; Run starts consuming.
func New(cfg Config, proj Projection, es *elasticsearch.Client, m *Metrics, log *slog.Logger) (*Runner, error) {
	return newRunner(cfg, proj, &esStore{es: es, index: cfg.Index}, m, log)
}

func newRunner(cfg Config, proj Projection, store Store, m *Metrics, log *slog.Logger) (*Runner, error) {
	cfg.defaults()
	if cfg.Group == "" || cfg.Topic == "" || cfg.Index == "" || len(cfg.Brokers) == 0 {
		return nil, errors.New("projector: brokers, group, topic and index are required")
	}
	log = log.With("projection", proj.Name(), "group", cfg.Group)
	r := &Runner{cfg: cfg, proj: proj, m: m, log: log}
	cl, err := newClient(cfg.ClientOpts,
		kgo.SeedBrokers(cfg.Brokers...),
		kgo.ConsumerGroup(cfg.Group),
		kgo.ConsumeTopics(cfg.Topic),
		kgo.Balancers(kgo.CooperativeStickyBalancer()),
		kgo.DisableAutoCommit(),
		// Rebalances wait until the batch in flight is handled and
		// committed, so a revoked partition never has records in flight.
		kgo.BlockRebalanceOnPoll(),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, parts map[string][]int32) {
			r.owned.set(parts, cfg.Topic, true)
			r.assigned.Store(true)
		}),
		kgo.OnPartitionsRevoked(r.onRevoked),
		kgo.OnPartitionsLost(r.onLost),
		// The same client produces dead letters (dlq_kafka.go).
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerLinger(0),
		kgo.FetchMaxWait(500*time.Millisecond),
		// A fetch fills about one batch: the client holds a whole fetch
		// response, decompressed, until its records are polled. The
		// bounds apply to compressed bytes, and event JSON compresses
		// up to about 8x, so they are an eighth of BatchMaxBytes (the
		// broker still returns a first record batch that is larger).
		kgo.FetchMaxBytes(fetchMaxBytes(cfg.BatchMaxBytes)),
		kgo.FetchMaxPartitionBytes(fetchMaxBytes(cfg.BatchMaxBytes)),
		kgo.SessionTimeout(cfg.SessionTimeout),
		kgo.HeartbeatInterval(min(3*time.Second, cfg.SessionTimeout/4)),
		kgo.WithLogger(kgoLogger{log.With("component", "kgo")}),
	)
	if err != nil {
		return nil, fmt.Errorf("kafka client: %w", err)
	}
	r.cl = cl
	r.adm = kadm.NewClient(cl)
	r.parts = newPartitions(m.Parked.WithLabelValues(proj.Name()))
	m.initProjection(proj.Name())
	r.quar, err = newKafkaQuarantine(cl, cfg.conn(), QuarantineTopic(cfg.Topic), proj.Name(), m.Quarantined.WithLabelValues(proj.Name()), log)
	if err != nil {
		cl.Close()
		return nil, err
	}
	dlq := &kafkaDLQ{cl: cl, projection: proj.Name()}
	r.proc = newProcessor(proj, store, dlq, r.quar, r.parts, m, log, cfg)
	r.quar.onRelease = r.proc.cache.evict
	r.quar.onSkip = func(e QuarantineEntry) {
		if r.parts.has(tp{e.Topic, e.Partition}) {
			m.SkippedEvents.WithLabelValues(proj.Name()).Inc()
			log.Warn("event skipped by an operator (projector dlq skip)", "aggregate_id", e.AggregateID, "version", e.SkippedVersion)
		}
	}
	return r, nil
}

// newClient is kgo.NewClient with the connection options (TLS, SASL)
// appended to the consumer's own.
func newClient(conn []kgo.Opt, opts ...kgo.Opt) (*kgo.Client, error) {
	return kgo.NewClient(append(opts, conn...)...)
}

// conn is how the runtime's own clients reach Kafka: the seed brokers and
// the connection options.
func (c Config) conn() []kgo.Opt {
	return append([]kgo.Opt{kgo.SeedBrokers(c.Brokers...)}, c.ClientOpts...)
}

// Ping checks Kafka answers (for /readyz).
func (r *Runner) Ping(ctx context.Context) error {
	if err := r.cl.Ping(ctx); err != nil {
		return fmt.Errorf("kafka: %w", err)
	}
	return nil
}

// setup ensures the projection's DLQ and quarantine topics, retrying
// while Kafka is unreachable: a projector started before Kafka waits for
// it (not ready) instead of exiting. A topic whose settings an operator
// must change (topics.ErrMisconfigured) ends it at once. Any other error
// means ctx ended while waiting.
func (r *Runner) setup(ctx context.Context) error {
	return backoff.RetryStartup(ctx, r.log, "setting up the projection's topics", func(ctx context.Context) error {
		err := ensureDLQTopic(ctx, r.adm, r.cfg.Topic, r.cfg.DLQPartitions, r.log)
		if err == nil {
			err = ensureQuarantineTopic(ctx, r.adm, QuarantineTopic(r.cfg.Topic), r.log)
		}
		if errors.Is(err, topics.ErrMisconfigured) {
			return backoff.Permanent(err)
		}
		return err
	})
}

// Consuming says whether Run is past its set-up and consuming (readiness).
func (r *Runner) Consuming() bool { return r.consuming.Load() }

// Run consumes until ctx ends, then finishes the in-flight batch (within
// ShutdownGrace), commits what is done and leaves the group.
func (r *Runner) Run(ctx context.Context) error {
	defer r.close(ctx)
	if err := r.setup(ctx); err != nil {
		r.quar.tail.Close()
		if ctx.Err() != nil {
			// Asked to stop while setting up (the client may already have
			// joined the group): a clean stop, not a failure.
			return nil
		}
		return err
	}
	quarCtx, quarStop := context.WithCancel(context.WithoutCancel(ctx))
	quarDone := make(chan struct{})
	go func() { defer close(quarDone); r.quar.run(quarCtx) }()
	defer func() { quarStop(); <-quarDone }()
	// Processing outlives ctx by at most ShutdownGrace so SIGTERM flushes.
	procCtx, procCancel := context.WithCancel(context.WithoutCancel(ctx))
	defer procCancel()
	stopGrace := context.AfterFunc(ctx, func() {
		time.AfterFunc(r.cfg.ShutdownGrace, procCancel)
	})
	defer stopGrace()

	lagDone := make(chan struct{})
	go func() { defer close(lagDone); r.lagLoop(ctx) }()
	defer func() { <-lagDone }()
	if r.cfg.Verify.Events != nil && r.cfg.Verify.Rate > 0 {
		verifyDone := make(chan struct{})
		go func() { defer close(verifyDone); newWorkerVerifier(r).run(ctx) }()
		defer func() { <-verifyDone }()
	}

	r.log.Info("projector consuming", "topic", r.cfg.Topic, "index", r.cfg.Index)
	r.consuming.Store(true)
	defer r.consuming.Store(false)
	for ctx.Err() == nil {
		var recs []*kgo.Record
		recheck := r.parts.parkedEvents() > 0
		if recheck {
			// Parked events are re-checked (gap closed elsewhere, or
			// ParkTimeout reached) even when no new records arrive.
			pctx, cancel := context.WithTimeout(ctx, r.cfg.ParkedRecheck)
			recs = r.poll(pctx)
			cancel()
		} else {
			recs = r.poll(ctx)
		}
		if r.assigned.Swap(false) {
			if err := r.proc.retry(procCtx, "reading the quarantine topic", func() error { return r.quar.caughtUp(procCtx) }); err != nil {
				r.log.Warn("batch abandoned; it will be redelivered", "records", len(recs), "err", err)
				r.cl.AllowRebalance()
				break
			}
		}
		if len(recs) > 0 || (recheck && ctx.Err() == nil) {
			if err := r.proc.handle(procCtx, recs); err != nil {
				// Only a cancelled processing context ends handle with an
				// error: nothing of this batch is committed.
				r.log.Warn("batch abandoned; it will be redelivered", "records", len(recs), "err", err)
				r.cl.AllowRebalance()
				break
			}
			r.commit(procCtx, nil)
			r.log.Debug("batch handled", "records", len(recs))
		}
		r.cl.AllowRebalance()
	}
	// Commit what is done, then leave the group (Close revokes and commits
	// again in onRevoked, which is a no-op when nothing moved).
	cctx, ccancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	r.commit(cctx, nil)
	ccancel()
	r.log.Info("projector stopped")
	return nil
}

// closeWait bounds Close after the leave: it only closes connections.
const closeWait = 5 * time.Second

// close leaves the group and closes the client within ShutdownGrace. A
// leave can hang while the group is rejoining against a broker that does
// not answer; then the client is abandoned (the process is on its way
// out) and the partitions move to the other workers after the session
// timeout, as after a crash: nothing is lost, everything uncommitted is
// redelivered.
func (r *Runner) close(ctx context.Context) {
	r.cl.AllowRebalance()
	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.ShutdownGrace)
	defer cancel()
	if err := r.cl.LeaveGroupContext(lctx); err != nil {
		r.log.Warn("leaving the consumer group timed out; its partitions move after the session timeout", "err", err)
	}
	closed := make(chan struct{})
	go func() { r.cl.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(closeWait):
		r.log.Warn("closing the Kafka client timed out; abandoning it")
	}
}

// poll returns up to BatchMaxRecords records and about BatchMaxBytes of
// them, waiting up to FlushInterval for more once some arrived. It takes
// records in chunks sized to what is left under the bounds; the records
// it leaves stay in the client's fetch buffer for the next batch.
func (r *Runner) poll(ctx context.Context) []*kgo.Record {
	var (
		recs  []*kgo.Record
		bytes int
	)
	collect := func(pctx context.Context) {
		f := r.cl.PollRecords(pctx, r.chunk(len(recs), bytes))
		f.EachError(func(topic string, p int32, err error) {
			if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, kgo.ErrClientClosed) {
				return
			}
			r.log.Warn("fetch error", "topic", topic, "partition", p, "err", err)
		})
		f.EachRecord(func(rec *kgo.Record) {
			recs = append(recs, rec)
			bytes += RecordBytes(rec)
		})
	}
	full := func() bool { return len(recs) >= r.cfg.BatchMaxRecords || bytes >= r.cfg.BatchMaxBytes }
	collect(ctx)
	if len(recs) == 0 {
		return recs
	}
	// What is already buffered joins the batch without waiting.
	for !full() {
		n := len(recs)
		collect(buffered)
		if len(recs) == n {
			break
		}
	}
	if r.cfg.FlushInterval <= 0 {
		return recs
	}
	deadline := time.Now().Add(r.cfg.FlushInterval)
	for !full() && ctx.Err() == nil {
		left := time.Until(deadline)
		if left <= 0 {
			break
		}
		pctx, cancel := context.WithTimeout(ctx, left)
		collect(pctx)
		cancel()
	}
	return recs
}

// pollChunk is how many records poll takes from the client at a time at
// most. A batch starts with one record, as nothing is known yet of the
// records' size; the next chunks follow the mean size so far.
const pollChunk = 1000

// chunk is how many records the next poll may take, given the n records
// of b bytes the batch has: what is left under BatchMaxRecords, and about
// what is left under BatchMaxBytes at the batch's mean record size.
func (r *Runner) chunk(n, b int) int {
	if n == 0 {
		return 1
	}
	left := (r.cfg.BatchMaxBytes-b)/(b/n+1) + 1
	return max(1, min(r.cfg.BatchMaxRecords-n, pollChunk, left))
}

// buffered is PollRecords' nil context: it returns what the client has
// buffered without waiting.
var buffered context.Context

// fetchMaxBytes is the compressed size of a fetch for batches of
// batchBytes record bytes.
func fetchMaxBytes(batchBytes int) int32 {
	return int32(min(max(batchBytes/8, 256<<10), 32<<20))
}

// RecordBytes is what a record weighs against BatchMaxBytes: its key,
// value and headers (the projector bench cuts its baseline's batches with
// it too).
func RecordBytes(rec *kgo.Record) int {
	n := len(rec.Key) + len(rec.Value)
	for _, h := range rec.Headers {
		n += len(h.Key) + len(h.Value)
	}
	return n
}

// commit commits the offsets of handled records (of only, or all). A
// failed commit is only logged: the offsets stay committable and go with
// the next commit, and if this member loses the partitions first their
// records are redelivered, which the versioned writes make harmless.
func (r *Runner) commit(ctx context.Context, only map[string][]int32) {
	offs := r.parts.toCommit(only)
	if len(offs) == 0 {
		return
	}
	var cerr error
	r.cl.CommitOffsetsSync(ctx, offs, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
		if err != nil {
			cerr = err
			return
		}
		for _, t := range resp.Topics {
			for _, p := range t.Partitions {
				if e := kerr.ErrorForCode(p.ErrorCode); e != nil && cerr == nil {
					cerr = fmt.Errorf("%s/%d: %w", t.Topic, p.Partition, e)
				}
			}
		}
	})
	if cerr != nil {
		r.log.Warn("committing offsets failed; the records will be redelivered if this member loses them", "err", cerr)
		return
	}
	r.parts.committed(offs)
}

func (r *Runner) onRevoked(ctx context.Context, _ *kgo.Client, revoked map[string][]int32) {
	// Rebalances are blocked while a batch is in flight, so everything
	// fetched for these partitions is handled: commit and forget them.
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	r.commit(cctx, revoked)
	r.proc.drop(revoked)
	r.owned.set(revoked, r.cfg.Topic, false)
	if len(revoked) > 0 {
		r.log.Info("partitions revoked", "partitions", fmt.Sprint(revoked))
	}
}

func (r *Runner) onLost(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
	r.proc.drop(lost)
	r.owned.set(lost, r.cfg.Topic, false)
	r.log.Warn("partitions lost; their uncommitted records will be redelivered to the new owner", "partitions", fmt.Sprint(lost))
}

// kgoLogger forwards franz-go's log lines to slog. Its info lines
// (connections, group joins, assignments) go out at debug, so they show
// only with LOG_LEVEL=debug; warnings and errors always do.
type kgoLogger struct{ log *slog.Logger }

func (l kgoLogger) Level() kgo.LogLevel {
	if l.log.Enabled(context.Background(), slog.LevelDebug) {
		return kgo.LogLevelInfo
	}
	return kgo.LogLevelWarn
}

func (l kgoLogger) Log(level kgo.LogLevel, msg string, keyvals ...any) {
	switch level {
	case kgo.LogLevelError:
		l.log.Error(msg, keyvals...)
	case kgo.LogLevelWarn:
		l.log.Warn(msg, keyvals...)
	default:
		l.log.Debug(msg, keyvals...)
	}
}
