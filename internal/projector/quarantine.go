package projector

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"cqrsflow/internal/topics"
)

// QuarantineTopic is the compacted topic holding the quarantined
// aggregates of topic's projections: <topic>.quarantine.
func QuarantineTopic(topic string) string { return topic + ".quarantine" }

// QuarantineEntry is one quarantined aggregate: the value of its record in
// the quarantine topic (key "<projection>:<aggregate id>"). A record with
// Released set, followed by a tombstone, releases it.
type QuarantineEntry struct {
	Projection  string `json:"projection"`
	AggregateID string `json:"aggregate_id"`
	// BlockedVersion is the version the aggregate cannot get past: every
	// later event is held (dead-lettered as quarantined_after).
	BlockedVersion int64  `json:"blocked_version"`
	Reason         string `json:"reason"` // reason code of the blocking event
	Detail         string `json:"detail,omitempty"`
	// Topic, Partition, Offset: the blocking event's record (Offset -1
	// when the version never arrived); DLQPartition, DLQOffset: its dead
	// letter (-1 when there is none).
	Topic        string    `json:"topic"`
	Partition    int32     `json:"partition"`
	Offset       int64     `json:"offset"`
	DLQPartition int32     `json:"dlq_partition"`
	DLQOffset    int64     `json:"dlq_offset"`
	Since        time.Time `json:"since"`
	// Released marks the record that ends a quarantine (redrive applied
	// everything, or an operator skipped the blocking event).
	Released       bool  `json:"released,omitempty"`
	SkippedVersion int64 `json:"skipped_version,omitempty"`
}

func (e QuarantineEntry) blocker() *Blocker {
	return &Blocker{Version: e.BlockedVersion, Topic: e.Topic, Partition: e.Partition, Offset: e.Offset}
}

func quarantineKey(projection, id string) []byte { return []byte(projection + ":" + id) }

// Quarantine is the set of quarantined aggregates as the processor needs
// it. The Kafka implementation is kafkaQuarantine; tests use quarantineSet.
type Quarantine interface {
	// Lookup returns the entries of those of ids that are quarantined.
	Lookup(ids []string) map[string]QuarantineEntry
	// Put records entries durably (returns once acknowledged) and in
	// memory.
	Put(ctx context.Context, entries []QuarantineEntry) error
}

// quarantineSet is the in-memory set, by aggregate id, with the offset of
// the record each entry came from so a late read of an older record never
// overrides a newer one.
type quarantineSet struct {
	mu        sync.Mutex
	m         map[string]qItem
	gauge     prometheus.Gauge
	onRelease func(id string) // called without the lock held
}

type qItem struct {
	e      QuarantineEntry
	offset int64
}

func newQuarantineSet(gauge prometheus.Gauge) *quarantineSet {
	gauge.Set(0)
	return &quarantineSet{m: map[string]qItem{}, gauge: gauge}
}

func (s *quarantineSet) Lookup(ids []string) map[string]QuarantineEntry {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.m) == 0 {
		return nil
	}
	out := map[string]QuarantineEntry{}
	for _, id := range ids {
		if it, ok := s.m[id]; ok {
			out[id] = it.e
		}
	}
	return out
}

// Put of the in-memory set alone (tests): entries are kept in order.
func (s *quarantineSet) Put(_ context.Context, entries []QuarantineEntry) error {
	for _, e := range entries {
		s.set(e, -1)
	}
	return nil
}

func (s *quarantineSet) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}

// set stores e read at offset (-1: written by this process, always newer).
func (s *quarantineSet) set(e QuarantineEntry, offset int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if cur, ok := s.m[e.AggregateID]; ok && offset >= 0 && cur.offset > offset {
		return
	}
	s.m[e.AggregateID] = qItem{e: e, offset: offset}
	s.gauge.Set(float64(len(s.m)))
}

// remove releases id by the record at offset; false if an entry newer
// than that record is held.
func (s *quarantineSet) remove(id string, offset int64) bool {
	s.mu.Lock()
	cur, ok := s.m[id]
	if ok && cur.offset > offset {
		s.mu.Unlock()
		return false
	}
	delete(s.m, id)
	s.gauge.Set(float64(len(s.m)))
	s.mu.Unlock()
	if ok && s.onRelease != nil {
		s.onRelease(id)
	}
	return ok
}

// quarantineWaitMax bounds how long a worker waits for the quarantine
// topic to be read to its end after an assignment. Past it the worker goes
// on with what it read: an aggregate it does not know is quarantined is
// still safe, because its later events meet a version gap and are parked,
// then quarantined again after PARK_TIMEOUT.
const quarantineWaitMax = 10 * time.Second

// kafkaQuarantine keeps the quarantine topic in memory: a client of its
// own (no consumer group) reads the topic from the start and then follows
// it, so every worker knows every quarantined aggregate of its
// projection, including those a previous owner of a partition
// quarantined, and the releases an operator writes.
type kafkaQuarantine struct {
	*quarantineSet
	prod       *kgo.Client // the runner's client (acks=all)
	tail       *kgo.Client
	adm        *kadm.Client
	topic      string
	projection string
	log        *slog.Logger
	started    time.Time
	onSkip     func(QuarantineEntry) // a release by `dlq skip` seen after start

	posMu sync.Mutex
	pos   map[int32]int64 // next offset to read, per partition
	moved chan struct{}   // closed and replaced whenever pos moves
}

func newKafkaQuarantine(prod *kgo.Client, conn []kgo.Opt, topic, projection string, gauge prometheus.Gauge, log *slog.Logger) (*kafkaQuarantine, error) {
	tail, err := newClient(conn, kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(500*time.Millisecond),
		kgo.WithLogger(kgoLogger{log.With("component", "kgo-quarantine")}))
	if err != nil {
		return nil, fmt.Errorf("kafka client for %s: %w", topic, err)
	}
	return &kafkaQuarantine{quarantineSet: newQuarantineSet(gauge), prod: prod, tail: tail, adm: kadm.NewClient(tail),
		topic: topic, projection: projection, log: log, started: time.Now(), pos: map[int32]int64{}, moved: make(chan struct{})}, nil
}

// ensureQuarantineTopic creates the compacted quarantine topic if missing:
// only the latest record per aggregate matters.
func ensureQuarantineTopic(ctx context.Context, adm *kadm.Client, topic string, log *slog.Logger) error {
	compact := "compact"
	err := topics.Ensure(ctx, adm, topics.Spec{Name: topic, Partitions: 1, ReplicationFactor: topics.DefaultReplicationFactor,
		Configs: map[string]*string{"cleanup.policy": &compact}, Log: log})
	if err != nil {
		return fmt.Errorf("ensuring the quarantine topic: %w", err)
	}
	return nil
}

// run follows the topic until ctx ends.
func (q *kafkaQuarantine) run(ctx context.Context) {
	defer q.tail.Close()
	for ctx.Err() == nil {
		f := q.tail.PollFetches(ctx)
		f.EachError(func(topic string, p int32, err error) {
			if !errors.Is(err, context.Canceled) && !errors.Is(err, kgo.ErrClientClosed) {
				q.log.Warn("reading the quarantine topic", "topic", topic, "partition", p, "err", err)
			}
		})
		f.EachRecord(q.consume)
		q.posMu.Lock()
		f.EachRecord(func(r *kgo.Record) { q.pos[r.Partition] = max(q.pos[r.Partition], r.Offset+1) })
		close(q.moved)
		q.moved = make(chan struct{})
		q.posMu.Unlock()
	}
}

func (q *kafkaQuarantine) consume(rec *kgo.Record) {
	proj, id, ok := strings.Cut(string(rec.Key), ":")
	if !ok || proj != q.projection {
		return
	}
	if rec.Value == nil {
		q.remove(id, rec.Offset)
		return
	}
	var e QuarantineEntry
	if err := json.Unmarshal(rec.Value, &e); err != nil || e.AggregateID != id {
		q.log.Warn("ignoring an unreadable quarantine record", "offset", rec.Offset, "err", err)
		return
	}
	if !e.Released {
		q.set(e, rec.Offset)
		return
	}
	if q.remove(id, rec.Offset) {
		q.log.Info("aggregate released from quarantine", "aggregate_id", id, "skipped_version", e.SkippedVersion)
	}
	if e.SkippedVersion > 0 && rec.Timestamp.After(q.started) && q.onSkip != nil {
		q.onSkip(e)
	}
}

// caughtUp returns once the tail has read the topic up to its end offsets
// of now, or after quarantineWaitMax (logged). An error means the end
// offsets could not be listed.
func (q *kafkaQuarantine) caughtUp(ctx context.Context) error {
	ends, err := q.adm.ListEndOffsets(ctx, q.topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return fmt.Errorf("listing end offsets of %s: %w", q.topic, err)
	}
	deadline := time.NewTimer(quarantineWaitMax)
	defer deadline.Stop()
	for {
		q.posMu.Lock()
		behind := int64(0)
		ends.Each(func(l kadm.ListedOffset) { behind += max(l.Offset-q.pos[l.Partition], 0) })
		moved := q.moved
		q.posMu.Unlock()
		if behind == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-moved:
		case <-deadline.C:
			q.log.Warn("quarantine topic not read to its end in time; going on with what was read (gaps still park and quarantine)",
				"topic", q.topic, "records_behind", behind)
			return nil
		}
	}
}

// Put writes entries to the quarantine topic and keeps them in memory.
func (q *kafkaQuarantine) Put(ctx context.Context, entries []QuarantineEntry) error {
	if len(entries) == 0 {
		return nil
	}
	recs := make([]*kgo.Record, len(entries))
	for i, e := range entries {
		v, err := json.Marshal(e)
		if err != nil {
			return fmt.Errorf("encoding quarantine entry: %w", err)
		}
		recs[i] = &kgo.Record{Topic: q.topic, Key: quarantineKey(e.Projection, e.AggregateID), Value: v}
	}
	res := q.prod.ProduceSync(ctx, recs...)
	if err := res.FirstErr(); err != nil {
		return fmt.Errorf("producing to %s: %w", q.topic, err)
	}
	for i, r := range res {
		q.set(entries[i], r.Record.Offset)
	}
	return nil
}
