package projector

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime/pprof"
	"time"

	"golang.org/x/sync/errgroup"

	"cqrsflow/internal/esindex"
	"cqrsflow/internal/obs"
	"cqrsflow/internal/projection/products"
	projectorrt "cqrsflow/internal/projector"
	"cqrsflow/internal/testenv"
)

// The part's only use of the projector runtime: w workers of it in this
// process, each its own franz-go client in one group, as the binary runs
// them.

// run is one measured projector run.
type run struct {
	workers int
	seconds float64
	rate    float64
}

// projectorRuns measures each worker count of -workers, under the CPU
// profile if one was asked for.
func (b *bench) projectorRuns(ctx context.Context) ([]run, error) {
	if b.s.CPUProfile != "" {
		f, err := os.Create(b.s.CPUProfile)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return nil, err
		}
		defer pprof.StopCPUProfile()
	}
	var runs []run
	for _, w := range b.s.Workers {
		secs, err := b.projectorRun(ctx, w)
		if err != nil {
			return nil, err
		}
		r := run{w, secs, float64(b.s.Events) / secs}
		runs = append(runs, r)
		fmt.Printf("projector, %d worker(s): %d events in %.2fs = %.0f events/s\n", w, b.s.Events, secs, r.rate)
	}
	return runs, nil
}

// lagBound only catches workers that stopped consuming: a full run
// finishes in a minute or two.
const lagBound = 30 * time.Minute

// projectorRun runs w projector workers in a fresh group on a fresh index
// until the group has committed every event, and checks the index.
func (b *bench) projectorRun(ctx context.Context, w int) (float64, error) {
	prefix := fmt.Sprintf("%s-w%d-", b.name, w)
	group := fmt.Sprintf("%s-w%d", b.name, w)
	defer func() {
		dctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = esindex.DeleteIndex(dctx, b.es, esindex.IndexName(prefix, "products", 1))
		_, _ = b.adm.DeleteGroups(dctx, group)
	}()
	alias, err := projectorrt.EnsureReadModel(ctx, b.es, prefix, products.Projection)
	if err != nil {
		return 0, err
	}
	m := projectorrt.NewMetrics(obs.NewRegistry())
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	g, gctx := errgroup.WithContext(rctx)
	start := time.Now()
	for range w {
		r, err := projectorrt.New(projectorrt.Config{Brokers: b.s.Brokers, Group: group, Topic: b.topic, Index: alias,
			BatchMaxRecords: b.s.Batch, BatchMaxBytes: b.s.BatchBytes, FlushInterval: 20 * time.Millisecond, LagInterval: time.Hour, DLQPartitions: 1}, products.Projection, b.es, m, b.log)
		if err != nil {
			return 0, err
		}
		g.Go(func() error { return r.Run(gctx) })
	}
	err = testenv.Until(ctx, lagBound, 100*time.Millisecond, "the group to commit every event", func() (bool, error) {
		if gctx.Err() != nil {
			return false, testenv.Permanent(fmt.Errorf("projector workers stopped: %w", g.Wait()))
		}
		lags, err := projectorrt.Lag(ctx, b.adm, group, b.topic)
		if err != nil {
			return false, err
		}
		var total int64
		for _, l := range lags {
			total += l
		}
		return total == 0, nil
	})
	elapsed := time.Since(start).Seconds()
	cancel()
	if err != nil {
		return 0, err
	}
	if err := g.Wait(); err != nil && !errors.Is(err, context.Canceled) {
		return 0, err
	}
	return elapsed, b.checkIndex(ctx, alias, w)
}

// checkIndex checks the run left one document per product.
func (b *bench) checkIndex(ctx context.Context, alias string, w int) error {
	if err := esindex.Refresh(ctx, b.es, alias); err != nil {
		return err
	}
	n, err := esindex.Count(ctx, b.es, alias)
	if err != nil {
		return err
	}
	if n != int64(b.s.Products) {
		return fmt.Errorf("projector run with %d workers indexed %d documents, want %d", w, n, b.s.Products)
	}
	return nil
}
