package projector

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/elastic/go-elasticsearch/v8"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"cqrsflow/internal/envelope"
	"cqrsflow/internal/esindex"
	"cqrsflow/internal/topics"
)

// bench is one run's private topic (and its DLQ) and the clients; every
// run and raw load makes and removes its own group and index.
type bench struct {
	s     settings
	name  string // prefix of every name the run creates
	topic string
	log   *slog.Logger
	kc    *kgo.Client
	adm   *kadm.Client
	es    *elasticsearch.Client
	made  []string // topics to delete
}

// setup creates the topic and its DLQ and checks Elasticsearch answers.
// On failure it removes what it made.
func setup(ctx context.Context, s settings, name string, log *slog.Logger) (*bench, error) {
	b := &bench{s: s, name: name, topic: envelope.Topic(name, "product"), log: log}
	if err := b.start(ctx); err != nil {
		b.cleanup()
		return nil, err
	}
	return b, nil
}

func (b *bench) start(ctx context.Context) error {
	var err error
	b.kc, err = kgo.NewClient(kgo.SeedBrokers(b.s.Brokers...), kgo.ProducerLinger(5*time.Millisecond),
		kgo.RequiredAcks(kgo.AllISRAcks()), kgo.ProducerBatchMaxBytes(1<<20))
	if err != nil {
		return err
	}
	b.adm = kadm.NewClient(b.kc)
	for _, t := range []string{b.topic, envelope.DLQTopic(b.topic)} {
		p := int32(b.s.Partitions)
		if t != b.topic {
			p = 1
		}
		if err := topics.Ensure(ctx, b.adm, topics.Spec{Name: t, Partitions: p, ReplicationFactor: 1, Configs: topics.InfiniteRetention(), Log: b.log}); err != nil {
			return fmt.Errorf("creating %s (run `make up`): %w", t, err)
		}
		b.made = append(b.made, t)
	}
	if b.es, err = esindex.New(b.s.ElasticsearchURL); err != nil {
		return err
	}
	if err := esindex.Ping(ctx, b.es); err != nil {
		return fmt.Errorf("elasticsearch at %s (run `make up`): %w", b.s.ElasticsearchURL, err)
	}
	return nil
}

// cleanup deletes the topics, with its own deadline.
func (b *bench) cleanup() {
	if b.kc == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if len(b.made) > 0 {
		_, _ = b.adm.DeleteTopics(ctx, b.made...)
	}
	b.kc.Close()
}
