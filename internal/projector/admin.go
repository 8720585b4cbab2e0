package projector

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/elastic/go-elasticsearch/v8"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"

	"cqrsflow/internal/esindex"
)

// ErrGroupActive is returned when offsets cannot be reset because the
// group has live members.
var ErrGroupActive = errors.New("consumer group has live members")

// ErrInvalidReplay is returned for replay options that cannot be used.
var ErrInvalidReplay = errors.New("invalid replay target")

// GroupName is the consumer group of a projection: <prefix>-<projection>,
// with -v<N> for a rebuild into version N.
func GroupName(prefix, projection string, version int) string {
	g := prefix + "-" + projection
	if version > 0 {
		g += "-v" + strconv.Itoa(version)
	}
	return g
}

// EnsureReadModel makes sure the projection's alias exists, creating
// <prefix><projection>_v1 behind it on first start. It returns the alias,
// which is where the live projector reads and writes (so it follows a
// rebuild's alias swap).
func EnsureReadModel(ctx context.Context, es *elasticsearch.Client, indexPrefix string, proj Projection) (string, error) {
	alias := esindex.AliasName(indexPrefix, proj.Name())
	_, err := esindex.AliasTargets(ctx, es, alias)
	if err == nil {
		return alias, nil
	}
	if !errors.Is(err, esindex.ErrNotFound) {
		return "", err
	}
	mapping, err := proj.Mapping()
	if err != nil {
		return "", fmt.Errorf("reading mapping of %s: %w", proj.Name(), err)
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

// ReplayTarget says where to reset a group: earliest, latest, a timestamp,
// or explicit offsets (topic → partition → offset).
type ReplayTarget struct {
	To      string // "earliest", "latest" or an RFC 3339 timestamp; empty with Offsets
	Offsets map[string]map[int32]int64
}

// ParseOffsets parses "topic:partition=offset,topic:partition=offset".
func ParseOffsets(s string) (map[string]map[int32]int64, error) {
	out := map[string]map[int32]int64{}
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		tpart, off, ok := strings.Cut(item, "=")
		colon := strings.LastIndex(tpart, ":")
		if !ok || colon <= 0 {
			return nil, fmt.Errorf("%w: %q is not topic:partition=offset", ErrInvalidReplay, item)
		}
		p, err := strconv.ParseInt(tpart[colon+1:], 10, 32)
		if err != nil || p < 0 {
			return nil, fmt.Errorf("%w: partition in %q", ErrInvalidReplay, item)
		}
		o, err := strconv.ParseInt(off, 10, 64)
		if err != nil || o < 0 {
			return nil, fmt.Errorf("%w: offset in %q", ErrInvalidReplay, item)
		}
		topic := tpart[:colon]
		if out[topic] == nil {
			out[topic] = map[int32]int64{}
		}
		out[topic][int32(p)] = o
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: no offsets given", ErrInvalidReplay)
	}
	return out, nil
}

// WaitGroupEmpty returns nil once group has no live members, polling up to
// wait (0: check once). ErrGroupActive otherwise.
func WaitGroupEmpty(ctx context.Context, adm *kadm.Client, group string, wait time.Duration) error {
	deadline := time.Now().Add(wait)
	for {
		dg, err := adm.DescribeGroups(ctx, group)
		if err != nil {
			return fmt.Errorf("describing group %s: %w", group, err)
		}
		d := dg[group]
		if d.Err != nil {
			return fmt.Errorf("describing group %s: %w", group, d.Err)
		}
		if len(d.Members) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w: %s has %d member(s) in state %s; stop the projectors of this group or pass --wait", ErrGroupActive, group, len(d.Members), d.State)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// Replay resets group's committed offsets on topic to target. It refuses
// while the group has live members (after waiting up to wait for it to
// empty). It returns the offsets committed.
func Replay(ctx context.Context, adm *kadm.Client, group, topic string, target ReplayTarget, wait time.Duration) (kadm.Offsets, error) {
	var listed kadm.ListedOffsets
	var err error
	switch {
	case target.Offsets != nil:
	case target.To == "earliest":
		listed, err = adm.ListStartOffsets(ctx, topic)
	case target.To == "latest":
		listed, err = adm.ListEndOffsets(ctx, topic)
	default:
		ts, perr := time.Parse(time.RFC3339Nano, target.To)
		if perr != nil {
			return nil, fmt.Errorf("%w: --to %q is not earliest, latest or an RFC 3339 timestamp", ErrInvalidReplay, target.To)
		}
		listed, err = adm.ListOffsetsAfterMilli(ctx, ts.UnixMilli(), topic)
	}
	if err == nil && listed != nil {
		err = listed.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("listing offsets of %s: %w", topic, err)
	}
	offs := kadm.Offsets{}
	if target.Offsets != nil {
		for t, ps := range target.Offsets {
			for p, o := range ps {
				offs.Add(kadm.Offset{Topic: t, Partition: p, At: o, LeaderEpoch: -1})
			}
		}
	} else {
		listed.Each(func(l kadm.ListedOffset) {
			offs.Add(kadm.Offset{Topic: l.Topic, Partition: l.Partition, At: l.Offset, LeaderEpoch: -1})
		})
	}
	if err := WaitGroupEmpty(ctx, adm, group, wait); err != nil {
		return nil, err
	}
	if err := adm.CommitAllOffsets(ctx, group, offs); err != nil {
		return nil, fmt.Errorf("committing offsets of %s: %w", group, err)
	}
	return offs, nil
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
	if err := esindex.EnsureIndex(ctx, es, index, mapping); err != nil {
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

	waitCaughtUp := func(phase string) error {
		t := time.NewTicker(opts.Interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case err := <-done:
				return fmt.Errorf("rebuild consumer stopped: %w", err)
			case <-t.C:
			}
			lags, err := Lag(ctx, adm, cfg.Group, cfg.Topic)
			if err != nil {
				log.Warn("rebuild progress", "err", err)
				continue
			}
			ends, err := adm.ListEndOffsets(ctx, cfg.Topic)
			if err != nil {
				continue
			}
			var end, lag int64
			ends.Each(func(l kadm.ListedOffset) { end += l.Offset })
			for _, l := range lags {
				lag += l
			}
			fmt.Fprintf(opts.Progress, "rebuild %s → %s [%s]: consumed %d of %d (lag %d)\n", proj.Name(), index, phase, end-lag, end, lag)
			if lag == 0 {
				return nil
			}
		}
	}
	if err := waitCaughtUp("catch-up"); err != nil {
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
	if err := waitCaughtUp("after swap"); err != nil {
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
		for _, o := range prev {
			if o == index {
				continue
			}
			if err := esindex.DeleteIndex(ctx, es, o); err != nil {
				return err
			}
			fmt.Fprintf(opts.Progress, "dropped old index %s\n", o)
		}
	}
	return nil
}
