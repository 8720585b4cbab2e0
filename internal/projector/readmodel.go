package projector

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/elastic/go-elasticsearch/v8"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"

	"cqrsflow/internal/esindex"
)

// EnsureReadModel makes sure the projection's alias exists, creating
// <prefix><projection>_v1 behind it on first start, and that the index
// behind it has every field of the projection's mapping. It returns the alias,
// which is where the live projector reads and writes (so it follows a
// rebuild's alias swap).
func EnsureReadModel(ctx context.Context, es *elasticsearch.Client, indexPrefix string, proj Projection) (string, error) {
	alias := esindex.AliasName(indexPrefix, proj.Name())
	mapping, err := proj.Mapping()
	if err != nil {
		return "", fmt.Errorf("reading mapping of %s: %w", proj.Name(), err)
	}
	_, err = esindex.AliasTargets(ctx, es, alias)
	if err == nil {
		// A field added since the index was created (a new event
		// schema version's) is added to it, or the strict mapping would
		// refuse every document carrying it.
		if err := esindex.PutMappings(ctx, es, alias, mapping); err != nil {
			return "", err
		}
		return alias, nil
	}
	if !errors.Is(err, esindex.ErrNotFound) {
		return "", err
	}
	index := esindex.IndexName(indexPrefix, proj.Name(), 1)
	if err := esindex.EnsureIndex(ctx, es, index, mapping); err != nil {
		return "", err
	}
	if _, err := esindex.EnsureAlias(ctx, es, alias, index); err != nil {
		return "", err
	}
	return alias, nil
}

// RebuildOptions configures Rebuild.
type RebuildOptions struct {
	Runner      Config // Brokers, Topic, BatchMaxRecords…; Group and Index are set by Rebuild
	GroupPrefix string
	IndexPrefix string
	Version     int
	DropOld     bool
	Progress    io.Writer
	Interval    time.Duration
}

// Rebuild builds <prefix><projection>_v<Version> from the earliest offsets
// under the group <group-prefix>-<projection>-v<Version>, reports progress,
// and once the new index has caught up swaps the alias to it in one
// _aliases request. It then catches up once more (events written to the
// old index between the catch-up and the swap reach the new index too;
// live projectors write through the alias, so after the swap they write
// to the new index) and leaves. The old index is kept unless DropOld. The
// rebuild group is deleted at the end so it does not show as lagging.
func Rebuild(ctx context.Context, opts RebuildOptions, proj Projection, es *elasticsearch.Client, adm *kadm.Client, log *slog.Logger) error {
	if opts.Version < 1 {
		return errors.New("rebuild: --version must be >= 1")
	}
	if opts.Interval <= 0 {
		opts.Interval = time.Second
	}
	if opts.Progress == nil {
		opts.Progress = io.Discard
	}
	alias := esindex.AliasName(opts.IndexPrefix, proj.Name())
	index := esindex.IndexName(opts.IndexPrefix, proj.Name(), opts.Version)
	if err := createRebuildIndex(ctx, es, proj, alias, index); err != nil {
		return err
	}
	cfg := opts.Runner
	cfg.Group = GroupName(opts.GroupPrefix, proj.Name(), opts.Version)
	cfg.Index = index
	if cfg.LagInterval <= 0 {
		cfg.LagInterval = opts.Interval
	}
	r, err := New(cfg, proj, es, NewMetrics(prometheus.NewRegistry()), log)
	if err != nil {
		return err
	}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan error, 1)
	go func() { done <- r.Run(runCtx) }()
	w := catchUp{adm: adm, group: cfg.Group, topic: cfg.Topic, done: done, interval: opts.Interval, log: log,
		progress: func(phase string, consumed, end, lag int64) {
			fmt.Fprintf(opts.Progress, "rebuild %s → %s [%s]: consumed %d of %d (lag %d)\n", proj.Name(), index, phase, consumed, end, lag)
		}}

	if err := w.wait(ctx, "catch-up"); err != nil {
		return err
	}
	if err := esindex.Refresh(ctx, es, index); err != nil {
		return err
	}
	prev, err := esindex.SwapAlias(ctx, es, alias, index)
	if err != nil {
		return err
	}
	fmt.Fprintf(opts.Progress, "alias %s swapped %v → %s\n", alias, prev, index)
	if err := w.wait(ctx, "after swap"); err != nil {
		return err
	}
	stop()
	if err := <-done; err != nil {
		return fmt.Errorf("stopping rebuild consumer: %w", err)
	}
	if _, err := adm.DeleteGroups(ctx, cfg.Group); err != nil {
		log.Warn("deleting rebuild group", "group", cfg.Group, "err", err)
	}
	if opts.DropOld {
		return dropIndices(ctx, es, prev, index, opts.Progress)
	}
	return nil
}

// createRebuildIndex creates index with the projection's mapping. It
// refuses an index the alias already points at: rebuilding the index the
// queries are served from would swap nothing.
func createRebuildIndex(ctx context.Context, es *elasticsearch.Client, proj Projection, alias, index string) error {
	old, err := esindex.AliasTargets(ctx, es, alias)
	if err != nil && !errors.Is(err, esindex.ErrNotFound) {
		return err
	}
	for _, o := range old {
		if o == index {
			return fmt.Errorf("rebuild: alias %s already points at %s; pick a new --version", alias, index)
		}
	}
	mapping, err := proj.Mapping()
	if err != nil {
		return err
	}
	return esindex.EnsureIndex(ctx, es, index, mapping)
}

// catchUp waits for a rebuild's consumer group to reach the end of its
// topic, reporting progress every interval.
type catchUp struct {
	adm          *kadm.Client
	group, topic string
	done         <-chan error // the rebuild consumer's Run result
	interval     time.Duration
	log          *slog.Logger
	progress     func(phase string, consumed, end, lag int64)
}

// wait returns nil once the group has consumed everything that was on
// the topic when the wait began (the end offsets of its first poll), or
// its lag is 0. Under a steady write load the lag is rarely 0 at the
// moment it is sampled (offsets are committed after each flush), so
// waiting for 0 alone may never end; what a phase needs is the topic as
// it was when the phase began (before the swap: nearly all of it; after
// the swap: every record the live projector may have written into the
// old index). It keeps polling through errors reading the offsets (Kafka
// may be briefly unavailable; ctx bounds the wait), and fails if the
// consumer stops.
func (c catchUp) wait(ctx context.Context, phase string) error {
	t := time.NewTicker(c.interval)
	defer t.Stop()
	var target kadm.ListedOffsets // the end offsets when the wait began
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-c.done:
			return fmt.Errorf("rebuild consumer stopped: %w", err)
		case <-t.C:
		}
		lags, err := Lag(ctx, c.adm, c.group, c.topic)
		if err != nil {
			c.log.Warn("rebuild progress", "err", err)
			continue
		}
		ends, err := c.adm.ListEndOffsets(ctx, c.topic)
		if err != nil {
			continue
		}
		var end, lag int64
		ends.Each(func(l kadm.ListedOffset) { end += l.Offset })
		for _, l := range lags {
			lag += l
		}
		c.progress(phase, end-lag, end, lag)
		if lag == 0 {
			return nil
		}
		if target == nil {
			target = ends
			continue
		}
		if c.reached(ctx, target) {
			return nil
		}
	}
}

// reached reports whether the group's committed offsets are at or past
// target on every partition.
func (c catchUp) reached(ctx context.Context, target kadm.ListedOffsets) bool {
	committed, err := c.adm.FetchOffsetsForTopics(ctx, c.group, c.topic)
	if err != nil || committed.Error() != nil {
		return false
	}
	ok := true
	target.Each(func(l kadm.ListedOffset) {
		if l.Offset == 0 {
			return
		}
		if o, found := committed.Lookup(c.topic, l.Partition); !found || o.Err != nil || o.At < l.Offset {
			ok = false
		}
	})
	return ok
}

// dropIndices deletes the indices the alias pointed at before the swap,
// except index.
func dropIndices(ctx context.Context, es *elasticsearch.Client, prev []string, index string, progress io.Writer) error {
	for _, o := range prev {
		if o == index {
			continue
		}
		if err := esindex.DeleteIndex(ctx, es, o); err != nil {
			return err
		}
		fmt.Fprintf(progress, "dropped old index %s\n", o)
	}
	return nil
}
