package projector

import (
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/trace"

	"cqrsflow/internal/topics"
)

// Defaults of Config, exported so the projector binary's flags show the
// same values the runtime falls back to.
const (
	// DefaultBatchMaxRecords is large because a batch is only what one
	// poll returns: it grows only with a backlog, and a larger batch folds
	// more events of one aggregate into one write.
	DefaultBatchMaxRecords = 100000
	// DefaultBatchMaxBytes bounds a batch by the size of its records as
	// well: decoded, folded and encoded for the bulk request, a batch
	// takes several times its record bytes in memory. 2 MiB is some
	// thousands of events, a bulk request of the size Elasticsearch
	// handles best, and keeps a worker catching up on a backlog within
	// about 150 MiB (BENCHMARKS.md).
	DefaultBatchMaxBytes = 2 << 20
	// DefaultDocCacheEntries bounds the document cache: enough for the
	// aggregates a busy worker updates again within a few batches, at a
	// few hundred bytes per document.
	DefaultDocCacheEntries = 50000
	DefaultFlushInterval   = 20 * time.Millisecond
	DefaultLagInterval     = 5 * time.Second
	DefaultSessionTimeout  = 10 * time.Second
	DefaultMaxParked       = 100000
	DefaultParkTimeout     = 30 * time.Second
	DefaultParkedRecheck   = 2 * time.Second
	DefaultShutdownGrace   = 15 * time.Second
	DefaultBackoffMin      = 100 * time.Millisecond
	DefaultBackoffMax      = 30 * time.Second
)

// Config configures one Runner. Zero fields take the Default* values,
// except FlushInterval, where 0 means "do not wait".
type Config struct {
	Brokers []string
	Group   string
	Topic   string
	// Index is where documents are read and written: the alias for the
	// live projection (it follows an alias swap), a concrete versioned
	// index for a rebuild.
	Index           string
	BatchMaxRecords int
	// BatchMaxBytes bounds a batch by the bytes of its records' keys and
	// values; a batch always takes at least one record.
	BatchMaxBytes int
	// DocCacheEntries bounds the documents kept to skip the _mget of the
	// next event of the same aggregate.
	DocCacheEntries int
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
	// ParkTimeout bounds how long a version gap may hold an aggregate's
	// events (and its partition's commit): a relay retry re-publishes a
	// missing event within seconds. After it the aggregate is quarantined
	// at the missing version and its parked events go to the DLQ
	// (reason version_gap), so the commit moves on.
	ParkTimeout time.Duration
	// MaxParked bounds the events held in memory behind version gaps. At
	// the bound the aggregates parked longest are quarantined (as after
	// ParkTimeout) until fewer remain; fetching never stops.
	MaxParked int
	// ParkedRecheck is how often a worker with parked events re-checks
	// them (gap closed by another writer, ParkTimeout reached) when no new
	// records arrive.
	ParkedRecheck time.Duration

	// Tracing, when set, records a span per applied batch linked to the
	// write of every record (processor.traceBatch); nil: no tracing work.
	// The end-to-end histogram's exemplars come from the records' trace
	// context headers either way.
	Tracing trace.TracerProvider

	// ClientOpts are appended to the Kafka client's options: the
	// connection's TLS and SASL (kafka.Settings.Opts).
	ClientOpts []kgo.Opt

	// Verify configures the continuous verification (verify_worker.go).
	Verify VerifyConfig
}

func (c *Config) defaults() {
	if c.BatchMaxRecords <= 0 {
		c.BatchMaxRecords = DefaultBatchMaxRecords
	}
	if c.BatchMaxBytes <= 0 {
		c.BatchMaxBytes = DefaultBatchMaxBytes
	}
	if c.DocCacheEntries <= 0 {
		c.DocCacheEntries = DefaultDocCacheEntries
	}
	if c.LagInterval <= 0 {
		c.LagInterval = DefaultLagInterval
	}
	if c.ShutdownGrace <= 0 {
		c.ShutdownGrace = DefaultShutdownGrace
	}
	if c.BackoffMin <= 0 {
		c.BackoffMin = DefaultBackoffMin
	}
	if c.BackoffMax <= 0 {
		c.BackoffMax = DefaultBackoffMax
	}
	if c.SessionTimeout <= 0 {
		c.SessionTimeout = DefaultSessionTimeout
	}
	if c.DLQPartitions <= 0 {
		c.DLQPartitions = topics.DefaultPartitions
	}
	if c.MaxParked <= 0 {
		c.MaxParked = DefaultMaxParked
	}
	if c.ParkedRecheck <= 0 {
		c.ParkedRecheck = DefaultParkedRecheck
	}
	if c.ParkTimeout <= 0 {
		c.ParkTimeout = DefaultParkTimeout
	}
	if c.Verify.Margin <= 0 {
		c.Verify.Margin = DefaultVerifyMargin
	}
	if c.Verify.Window <= 0 {
		c.Verify.Window = DefaultVerifyWindow
	}
}
