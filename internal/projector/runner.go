// Package projector is the consumer runtime that keeps the Elasticsearch
// read models in sync with the event topics.
//
// One Runner consumes one projection's topic in its own consumer group
// (cooperative-sticky, manual commits). Each poll is one batch: poison
// records go to `<topic>.dlq`; the other events are grouped by aggregate,
// the current documents are fetched with _mget (their _version is the
// aggregate version), the events are folded in memory in version order and
// the changed documents are written with one _bulk request using the
// aggregate version as external version. Offsets are committed only after
// Elasticsearch (and, for poison, Kafka) acknowledged; rebalances are
// blocked while a batch is in flight, and revoked partitions are committed
// in OnPartitionsRevoked.
//
// Version gaps (parking). An event whose version is more than one above the
// document's is parked: kept in memory with its record, together with the
// later events of the same aggregate, counted (outcome "parked",
// cqrsflow_projector_version_gaps_total) and logged; the parked count is the
// gauge cqrsflow_projector_parked_events. Other aggregates keep flowing and
// are applied normally. When the missing event arrives (a relay retry
// re-publishes it later in the same partition) the parked events are
// applied in order and the key is unparked. Parked aggregates are also
// re-read from Elasticsearch with every batch, so a gap closed by another
// writer (a rebuild writing through the alias) resolves too.
//
// Parked records are never lost: the committed offset of a partition never
// moves past its oldest parked record, so a restart, a crash or a new owner
// after a rebalance re-reads the partition from there (events already
// applied come back as duplicate/stale no-ops, the gap is detected again).
// The price is that the partition's committed offset — and so its consumer
// lag and sync lag — stays behind while a gap is open, which is exactly the
// signal an operator needs. An operator resolves a gap that will never
// close (the missing event is gone) by fixing the event stream or by moving
// the group past it with `projector replay --offsets topic:partition=offset`.
package projector

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/elastic/go-elasticsearch/v8"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"cqrsflow/internal/backoff"
	"cqrsflow/internal/envelope"
	"cqrsflow/internal/esindex"
	"cqrsflow/internal/topics"
)

// DLQ headers set on every dead-lettered record (with the original headers).
const (
	HeaderDLQReason          = "x-dlq-reason"
	HeaderDLQSourceTopic     = "x-dlq-source-topic"
	HeaderDLQSourcePartition = "x-dlq-source-partition"
	HeaderDLQSourceOffset    = "x-dlq-source-offset"
	HeaderDLQProjection      = "x-dlq-projection"
)

// Config configures one Runner.
type Config struct {
	Brokers []string
	Group   string
	Topic   string
	// Index is where documents are read and written: the alias for the
	// live projection (it follows an alias swap), a concrete versioned
	// index for a rebuild.
	Index           string
	BatchMaxRecords int
	// FlushInterval is how long a batch waits for more records once it has
	// some and is not full.
	FlushInterval time.Duration
	LagInterval   time.Duration
	// ShutdownGrace bounds finishing the in-flight batch after ctx ends.
	ShutdownGrace time.Duration
	BackoffMin    time.Duration
	BackoffMax    time.Duration
	// DLQPartitions is the partition count used when creating the DLQ topic.
	DLQPartitions int32
	// SessionTimeout: how long the group waits for a silent (crashed)
	// member before handing its partitions to the others.
	SessionTimeout time.Duration
	// MaxParked bounds the events held in memory behind version gaps. At
	// the bound the worker stops fetching new records (the topic is
	// paused; sync lag grows and alerts fire) and only re-checks the
	// parked keys against Elasticsearch every ParkedRecheck, until gaps
	// close or an operator acts; memory stays bounded by MaxParked plus
	// one poll of already-fetched records.
	MaxParked     int
	ParkedRecheck time.Duration
}

func (c *Config) defaults() {
	if c.BatchMaxRecords <= 0 {
		c.BatchMaxRecords = 2000
	}
	if c.LagInterval <= 0 {
		c.LagInterval = 5 * time.Second
	}
	if c.ShutdownGrace <= 0 {
		c.ShutdownGrace = 15 * time.Second
	}
	if c.BackoffMin <= 0 {
		c.BackoffMin = 100 * time.Millisecond
	}
	if c.BackoffMax <= 0 {
		c.BackoffMax = 30 * time.Second
	}
	if c.SessionTimeout <= 0 {
		c.SessionTimeout = 10 * time.Second
	}
	if c.DLQPartitions <= 0 {
		c.DLQPartitions = topics.DefaultPartitions
	}
	if c.MaxParked <= 0 {
		c.MaxParked = 100000
	}
	if c.ParkedRecheck <= 0 {
		c.ParkedRecheck = 2 * time.Second
	}
}

// Runner consumes one projection.
type Runner struct {
	cfg  Config
	proj Projection
	cl   *kgo.Client
	adm  *kadm.Client
	proc *processor
	m    *Metrics
	log  *slog.Logger

	behindSince atomic.Int64 // unix nanos when lag was first seen > 0
	lagTotal    atomic.Int64 // last computed total lag (-1 unknown)
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
	r.lagTotal.Store(-1)
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(cfg.Brokers...),
		kgo.ConsumerGroup(cfg.Group),
		kgo.ConsumeTopics(cfg.Topic),
		kgo.Balancers(kgo.CooperativeStickyBalancer()),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.OnPartitionsRevoked(r.onRevoked),
		kgo.OnPartitionsLost(r.onLost),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerLinger(0),
		kgo.FetchMaxWait(500*time.Millisecond),
		// Large fetches let a catch-up batch fill up (more events per
		// aggregate fold into one write).
		kgo.FetchMaxPartitionBytes(8<<20),
		kgo.FetchMaxBytes(64<<20),
		kgo.SessionTimeout(cfg.SessionTimeout),
		kgo.HeartbeatInterval(min(3*time.Second, cfg.SessionTimeout/4)),
		kgo.WithLogger(kgoLogger{log.With("component", "kgo")}),
	)
	if err != nil {
		return nil, fmt.Errorf("kafka client: %w", err)
	}
	r.cl = cl
	r.adm = kadm.NewClient(cl)
	dlq := &kafkaDLQ{cl: cl, projection: proj.Name()}
	r.proc = newProcessor(proj, store, dlq, m, log, backoff.Policy{Min: cfg.BackoffMin, Max: cfg.BackoffMax})
	return r, nil
}

// Ping checks Kafka answers (for /readyz).
func (r *Runner) Ping(ctx context.Context) error {
	if err := r.cl.Ping(ctx); err != nil {
		return fmt.Errorf("kafka: %w", err)
	}
	return nil
}

// Run consumes until ctx ends, then finishes the in-flight batch (within
// ShutdownGrace), commits what is done and leaves the group.
func (r *Runner) Run(ctx context.Context) error {
	defer r.cl.Close()
	setupCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err := topics.Ensure(setupCtx, r.adm, topics.Spec{Name: envelope.DLQTopic(r.cfg.Topic), Partitions: r.cfg.DLQPartitions,
		ReplicationFactor: topics.DefaultReplicationFactor, Configs: topics.InfiniteRetention(), Log: r.log})
	cancel()
	if err != nil {
		return fmt.Errorf("ensuring the DLQ topic: %w", err)
	}
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

	r.log.Info("projector consuming", "topic", r.cfg.Topic, "index", r.cfg.Index)
	paused := false
	for ctx.Err() == nil {
		paused = r.pauseAtParkedCap(paused)
		var recs []*kgo.Record
		if paused {
			// Fetching is paused: take what was already fetched, and
			// re-check the parked keys (handle with no new records).
			pctx, cancel := context.WithTimeout(ctx, r.cfg.ParkedRecheck)
			recs = r.poll(pctx)
			cancel()
		} else {
			recs = r.poll(ctx)
		}
		if len(recs) > 0 || (paused && ctx.Err() == nil) {
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
	r.cl.CloseAllowingRebalance()
	r.log.Info("projector stopped")
	return nil
}

// pauseAtParkedCap pauses fetching the topic while MaxParked or more
// events are parked and resumes it below; it returns whether fetching is
// paused now.
func (r *Runner) pauseAtParkedCap(paused bool) bool {
	n := r.proc.parkedEvents()
	switch {
	case !paused && n >= r.cfg.MaxParked:
		r.cl.PauseFetchTopics(r.cfg.Topic)
		r.m.FetchPaused.WithLabelValues(r.proj.Name()).Set(1)
		r.log.Error("parked events reached MAX_PARKED_EVENTS: fetching paused until version gaps close (see docs/operations.md)",
			"parked", n, "max", r.cfg.MaxParked)
		return true
	case paused && n < r.cfg.MaxParked:
		r.cl.ResumeFetchTopics(r.cfg.Topic)
		r.m.FetchPaused.WithLabelValues(r.proj.Name()).Set(0)
		r.log.Info("parked events below MAX_PARKED_EVENTS: fetching resumed", "parked", n, "max", r.cfg.MaxParked)
		return false
	}
	return paused
}

// poll returns up to BatchMaxRecords records, waiting up to FlushInterval
// for more once some arrived.
func (r *Runner) poll(ctx context.Context) []*kgo.Record {
	max := r.cfg.BatchMaxRecords
	var recs []*kgo.Record
	collect := func(f kgo.Fetches) {
		f.EachError(func(topic string, p int32, err error) {
			if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, kgo.ErrClientClosed) {
				return
			}
			r.log.Warn("fetch error", "topic", topic, "partition", p, "err", err)
		})
		recs = append(recs, f.Records()...)
	}
	collect(r.cl.PollRecords(ctx, max))
	if len(recs) == 0 || r.cfg.FlushInterval <= 0 {
		return recs
	}
	deadline := time.Now().Add(r.cfg.FlushInterval)
	for len(recs) < max && ctx.Err() == nil {
		left := time.Until(deadline)
		if left <= 0 {
			break
		}
		pctx, cancel := context.WithTimeout(ctx, left)
		collect(r.cl.PollRecords(pctx, max-len(recs)))
		cancel()
	}
	return recs
}

// commit commits the offsets of handled records (of only, or all).
func (r *Runner) commit(ctx context.Context, only map[string][]int32) {
	offs := r.proc.toCommit(only)
	if len(offs) == 0 {
		return
	}
	var cerr error
	r.cl.CommitOffsetsSync(ctx, offs, func(_ *kgo.Client, _ *kmsgReq, resp *kmsgResp, err error) {
		if err != nil {
			cerr = err
			return
		}
		for _, t := range resp.Topics {
			for _, p := range t.Partitions {
				if e := kerrOf(p.ErrorCode); e != nil && cerr == nil {
					cerr = fmt.Errorf("%s/%d: %w", t.Topic, p.Partition, e)
				}
			}
		}
	})
	if cerr != nil {
		r.log.Warn("committing offsets failed; the records will be redelivered if this member loses them", "err", cerr)
		return
	}
	r.proc.committed(offs)
}

func (r *Runner) onRevoked(ctx context.Context, _ *kgo.Client, revoked map[string][]int32) {
	// Rebalances are blocked while a batch is in flight, so everything
	// fetched for these partitions is handled: commit and forget them.
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	r.commit(cctx, revoked)
	r.proc.drop(revoked)
	if len(revoked) > 0 {
		r.log.Info("partitions revoked", "partitions", fmt.Sprint(revoked))
	}
}

func (r *Runner) onLost(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
	r.proc.drop(lost)
	r.log.Warn("partitions lost; their uncommitted records will be redelivered to the new owner", "partitions", fmt.Sprint(lost))
}

// lagLoop updates consumer lag and sync lag every LagInterval.
func (r *Runner) lagLoop(ctx context.Context) {
	t := time.NewTicker(r.cfg.LagInterval)
	defer t.Stop()
	for {
		r.updateLag(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Lag returns the group's lag per partition of the topic: end offset minus
// committed offset (the start offset when nothing is committed).
func Lag(ctx context.Context, adm *kadm.Client, group, topic string) (map[int32]int64, error) {
	committed, err := adm.FetchOffsetsForTopics(ctx, group, topic)
	if err == nil {
		err = committed.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("fetching committed offsets of %s: %w", group, err)
	}
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("listing end offsets of %s: %w", topic, err)
	}
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("listing start offsets of %s: %w", topic, err)
	}
	out := map[int32]int64{}
	ends.Each(func(e kadm.ListedOffset) {
		at := int64(-1)
		if c, ok := committed.Lookup(topic, e.Partition); ok && c.Err == nil {
			at = c.At
		}
		if at < 0 {
			if s, ok := starts.Lookup(topic, e.Partition); ok {
				at = s.Offset
			}
		}
		lag := e.Offset - at
		if lag < 0 {
			lag = 0
		}
		out[e.Partition] = lag
	})
	return out, nil
}

func (r *Runner) updateLag(ctx context.Context) {
	name := r.proj.Name()
	lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	lags, err := Lag(lctx, r.adm, r.cfg.Group, r.cfg.Topic)
	cancel()
	now := time.Now()
	if err != nil {
		if ctx.Err() == nil {
			r.log.Warn("computing consumer lag", "err", err)
		}
		// Unknown lag: do not pretend to be healthy; keep the sync lag
		// growing from what we know.
		r.setSyncLag(now, true)
		return
	}
	var total int64
	for p, l := range lags {
		r.m.ConsumerLag.WithLabelValues(name, r.cfg.Topic, strconv.Itoa(int(p))).Set(float64(l))
		total += l
	}
	r.lagTotal.Store(total)
	r.setSyncLag(now, total > 0)
}

// setSyncLag sets cqrsflow_projector_sync_lag_seconds. Caught up (no
// consumer lag, nothing held) → 0. Behind → now minus the recorded_at of
// the oldest record this worker holds unfinished (batch in flight or
// parked); when it holds none (records wait in Kafka, e.g. this worker has
// no partitions or is stuck before fetching), now minus the later of the
// newest applied event's recorded_at and the moment the lag was first
// seen. Either way the value grows while records wait, so a stuck or
// stopped consumer never reports 0, and an idle projection that just got
// one new event does not report the whole idle time.
func (r *Runner) setSyncLag(now time.Time, behind bool) {
	held := r.proc.oldestHeld()
	if !behind && held.IsZero() {
		r.behindSince.Store(0)
		r.m.SyncLag.WithLabelValues(r.proj.Name()).Set(0)
		return
	}
	if r.behindSince.Load() == 0 {
		r.behindSince.Store(now.UnixNano())
	}
	ref := held
	if ref.IsZero() {
		ref = time.Unix(0, max(r.proc.lastApplied.Load(), r.behindSince.Load()))
	}
	lag := now.Sub(ref).Seconds()
	if lag < 0 {
		lag = 0
	}
	r.m.SyncLag.WithLabelValues(r.proj.Name()).Set(lag)
}

// esStore reads and writes one index (or alias) of Elasticsearch.
type esStore struct {
	es    *elasticsearch.Client
	index string
}

func (s *esStore) MGet(ctx context.Context, ids []string) (map[string]esindex.Hit, error) {
	return esindex.MGet(ctx, s.es, s.index, ids)
}

func (s *esStore) Bulk(ctx context.Context, ops []esindex.Op) ([]esindex.Result, error) {
	for i := range ops {
		ops[i].Index = s.index
	}
	return esindex.Bulk(ctx, s.es, ops, "")
}

// kafkaDLQ produces dead letters with the consumer's client (acks=all).
type kafkaDLQ struct {
	cl         *kgo.Client
	projection string
}

func (d *kafkaDLQ) Send(ctx context.Context, rec *kgo.Record, reason string) error {
	if len(reason) > 1000 {
		reason = reason[:1000]
	}
	out := &kgo.Record{
		Topic: envelope.DLQTopic(rec.Topic),
		Key:   rec.Key,
		Value: rec.Value,
	}
	out.Headers = append(out.Headers, rec.Headers...)
	out.Headers = append(out.Headers,
		kgo.RecordHeader{Key: HeaderDLQReason, Value: []byte(reason)},
		kgo.RecordHeader{Key: HeaderDLQSourceTopic, Value: []byte(rec.Topic)},
		kgo.RecordHeader{Key: HeaderDLQSourcePartition, Value: []byte(strconv.Itoa(int(rec.Partition)))},
		kgo.RecordHeader{Key: HeaderDLQSourceOffset, Value: []byte(strconv.FormatInt(rec.Offset, 10))},
		kgo.RecordHeader{Key: HeaderDLQProjection, Value: []byte(d.projection)},
	)
	if err := d.cl.ProduceSync(ctx, out).FirstErr(); err != nil {
		return fmt.Errorf("producing to %s: %w", out.Topic, err)
	}
	return nil
}

// kgoLogger forwards franz-go's log lines to slog (info and above).
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
