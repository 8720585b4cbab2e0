package relay

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	outboxrelay "cqrsflow/internal/relay"
)

// The part's only use of the relay package: an in-process relay on the
// run's schema and topics, and the relay's producer settings for the raw
// baseline.

// relayRun says how one in-process relay runs.
type relayRun struct {
	id        string
	asShipped bool // the binary's wake linger; otherwise a woken worker claims at once
	onAck     func(recordedAt, ackedAt time.Time)
}

func producerOpts(brokers []string) []kgo.Opt {
	return outboxrelay.ProducerOpts(brokers, 30*time.Second)
}

// rawOpts are the relay's producer settings without manual flushing: the
// raw baseline streams every record as it is produced (the ceiling a
// producer reaches; the relay flushes each batch as a whole to keep a
// refused record's later ones of its partition off Kafka).
func rawOpts(brokers []string) []kgo.Opt {
	return []kgo.Opt{
		kgo.SeedBrokers(brokers...),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)),
		kgo.ProducerLinger(0),
		kgo.RecordDeliveryTimeout(30 * time.Second),
	}
}

// startRelay runs an in-process relay; the returned func stops it and
// waits until it released its leases.
func (b *bench) startRelay(ctx context.Context, r relayRun) (func(), error) {
	cfg := outboxrelay.Config{ID: r.id, TopicPrefix: b.relayPrefix, BatchSize: b.s.BatchSize, Workers: b.s.Workers,
		PollInterval: 100 * time.Millisecond, StatsInterval: time.Hour, OnAck: r.onAck}
	if r.asShipped {
		cfg.Linger = outboxrelay.DefaultLinger
	}
	rl, err := outboxrelay.New(cfg, b.pool, func() (outboxrelay.Producer, error) {
		return kgo.NewClient(producerOpts(b.s.Brokers)...)
	}, prometheus.NewRegistry(), b.log)
	if err != nil {
		return nil, err
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { _ = rl.Run(rctx); close(done) }()
	return func() { cancel(); <-done; rl.Close() }, nil
}
