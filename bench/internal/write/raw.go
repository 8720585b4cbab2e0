package write

import (
	"context"
	"encoding/json"
	"errors"
	mrand "math/rand/v2"
	"sync"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"cqrsflow/internal/envelope"
	"cqrsflow/internal/eventstore"
)

// rawStore is the baseline: the api's SQL transaction (eventstore.Execute:
// lock head row, load, append events + outbox, notify, commit) run
// in-process, without HTTP, JSON decoding, validation or auth, one
// command per transaction (store) or grouped the api's way (batcher). It
// is the part's only use of the event store.
type rawStore struct {
	pool    *pgxpool.Pool
	store   *eventstore.Store
	batcher *eventstore.Batcher
}

// repository is what both baselines run commands on.
type repository interface {
	Execute(ctx context.Context, cmd eventstore.Command) (eventstore.Result, error)
}

// openRaw opens a pool of the api's size on the schema's URL.
func openRaw(ctx context.Context, url string, maxConns int) (*rawStore, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, err
	}
	cfg.MaxConns = int32(maxConns)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	r := &rawStore{pool: pool, store: eventstore.New(pool)}
	if r.batcher, err = eventstore.NewBatcher(r.store, eventstore.DefaultBatchConfig(), nil, prometheus.NewRegistry()); err != nil {
		r.close()
		return nil, err
	}
	return r, nil
}

func (r *rawStore) close() {
	if r.batcher != nil {
		r.batcher.Close()
	}
	r.store.Close()
	r.pool.Close()
}

func productEvent(typ string, i int) eventstore.NewEvent {
	return eventstore.NewEvent{Type: typ, SchemaVersion: 1, Payload: json.RawMessage(productBody(i))}
}

// seed creates n products through the store, 8 at a time, and returns
// their ids.
func (r *rawStore) seed(ctx context.Context, n int) ([]string, error) {
	ids := make([]string, n)
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for w := range 8 {
		wg.Go(func() {
			for i := w; i < n; i += 8 {
				ids[i] = uuid.NewString()
				if _, err := r.store.Create(ctx, "product", ids[i], []eventstore.NewEvent{productEvent("ProductCreated", i)}); err != nil {
					errs[w] = err
					return
				}
			}
		})
	}
	wg.Wait()
	return ids, errors.Join(errs...)
}

// command is one command of the mix: an update of a random product of ids
// (with probability updateShare) or a create.
func (r *rawStore) command(ctx context.Context, repo repository, ids []string, updateShare float64) error {
	meta := envelope.Metadata{CorrelationID: uuid.NewString(), Principal: "bench"}
	meta.RequestID = meta.CorrelationID
	i := mrand.IntN(1_000_000)
	if mrand.Float64() < updateShare {
		_, err := repo.Execute(ctx, eventstore.Command{AggregateType: "product", AggregateID: ids[mrand.IntN(len(ids))],
			ExpectedVersion: eventstore.AnyVersion, Metadata: meta,
			Decide: func([]eventstore.Event) ([]eventstore.NewEvent, error) {
				return []eventstore.NewEvent{productEvent("ProductUpdated", i)}, nil
			}})
		return err
	}
	_, err := repo.Execute(ctx, eventstore.Command{AggregateType: "product", AggregateID: uuid.NewString(),
		ExpectedVersion: eventstore.NoAggregate, Metadata: meta,
		Decide: func([]eventstore.Event) ([]eventstore.NewEvent, error) {
			return []eventstore.NewEvent{productEvent("ProductCreated", i)}, nil
		}})
	return err
}

// checkpoint flushes PostgreSQL's dirty pages.
func (r *rawStore) checkpoint(ctx context.Context) error {
	_, err := r.pool.Exec(ctx, "CHECKPOINT")
	return err
}
