package relay

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"cqrsflow/internal/testenv"
	"cqrsflow/internal/topics"
)

// bench is one run's private schema and topics: the relay's, and the raw
// producer's copy of them.
type bench struct {
	s           settings
	log         *slog.Logger
	schema      *testenv.Schema
	pool        *pgxpool.Pool
	kc          *kgo.Client
	adm         *kadm.Client
	relayPrefix string
	rawPrefix   string
	created     []string // topics to delete
	workDirs    []string // temporary dirs to remove (the steady phase's binary and log)
}

// setup creates and migrates the schema and creates the topics. On failure
// it removes what it made.
func setup(ctx context.Context, s settings, log *slog.Logger) (*bench, error) {
	id := testenv.RandomHex(4)
	b := &bench{s: s, log: log, relayPrefix: "bench-relay-" + id, rawPrefix: "bench-relay-raw-" + id}
	if err := b.start(ctx); err != nil {
		b.cleanup()
		return nil, err
	}
	return b, nil
}

func (b *bench) start(ctx context.Context) error {
	var err error
	if b.schema, err = testenv.CreateSchema(ctx, b.s.PostgresURL, "bench_relay_"+testenv.RandomHex(4)); err != nil {
		return err
	}
	if err := b.schema.Migrate(ctx); err != nil {
		return err
	}
	pcfg, err := pgxpool.ParseConfig(b.schema.URL)
	if err != nil {
		return err
	}
	pcfg.MaxConns = 16
	if b.pool, err = pgxpool.NewWithConfig(ctx, pcfg); err != nil {
		return err
	}
	if b.kc, err = kgo.NewClient(kgo.SeedBrokers(b.s.Brokers...)); err != nil {
		return err
	}
	b.adm = kadm.NewClient(b.kc)
	for _, prefix := range []string{b.relayPrefix, b.rawPrefix} {
		for _, spec := range topics.EventSpecs(prefix, aggTypes, int32(b.s.Partitions), 1, b.log) {
			if err := topics.Ensure(ctx, b.adm, spec); err != nil {
				return fmt.Errorf("creating topics on %v (run `make up`): %w", b.s.Brokers, err)
			}
			b.created = append(b.created, spec.Name)
		}
	}
	return nil
}

// cleanup deletes the topics and drops the schema, with its own deadline
// (also after the run's context was cancelled). Failures are printed: the
// measurement is done by then.
func (b *bench) cleanup() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if len(b.created) > 0 {
		if _, err := b.adm.DeleteTopics(ctx, b.created...); err != nil {
			fmt.Fprintf(os.Stderr, "cleanup: deleting topics: %v\n", err)
		}
	}
	if b.kc != nil {
		b.kc.Close()
	}
	if b.pool != nil {
		b.pool.Close()
	}
	if b.schema != nil {
		if err := b.schema.Drop(ctx); err != nil {
			fmt.Fprintf(os.Stderr, "cleanup: %v\n", err)
		}
	}
	for _, d := range b.workDirs {
		_ = os.RemoveAll(d)
	}
}
