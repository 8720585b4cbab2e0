package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"cqrsflow/internal/cli"
	"cqrsflow/internal/command"
	"cqrsflow/internal/config"
	"cqrsflow/internal/eventstore"
)

// snapshotsCommand is `api snapshots rebuild`: after a change of a fold or
// of a state's encoding (a new StateVersion), commands ignore the old
// snapshots and fold whole histories until they append; the rebuild
// rewrites every snapshot at once instead.
var snapshotsCommand = &cli.Command{
	Name: "snapshots", Summary: "manage the aggregates' snapshots",
	Commands: []*cli.Command{
		{Name: "rebuild", Summary: "rewrite every snapshot of the aggregate types from their events and exit", Setup: func(s *config.Set) cli.Action {
			var c Config
			var types []string
			c.registerDB(s)
			all := make([]string, 0, 2)
			for _, sn := range command.Snapshotters() {
				all = append(all, sn.AggregateType)
			}
			s.List(&types, "AGGREGATE_TYPES", strings.Join(all, ","), "aggregate types whose snapshots to rebuild")
			return cli.Action{
				Validate: func() error { return errors.Join(c.validateDB(), validTypes(types, all)) },
				Run:      func(ctx context.Context, env cli.Env) error { return rebuildSnapshots(ctx, c, types, env) },
			}
		}},
	},
}

func validTypes(types, known []string) error {
	if len(types) == 0 {
		return errors.New("AGGREGATE_TYPES must name at least one aggregate type")
	}
	var errs []error
	for _, t := range types {
		if !slices.Contains(known, t) {
			errs = append(errs, fmt.Errorf("AGGREGATE_TYPES: %q has no snapshots (known: %s)", t, strings.Join(known, ", ")))
		}
	}
	return errors.Join(errs...)
}

func rebuildSnapshots(ctx context.Context, c Config, types []string, env cli.Env) error {
	c.PostgresMaxConns = 2
	pool, err := openPool(ctx, c)
	if err != nil {
		return err
	}
	defer pool.Close()
	store := eventstore.New(pool)
	defer store.Close()
	for _, sn := range command.Snapshotters() {
		if !slices.Contains(types, sn.AggregateType) {
			continue
		}
		n, err := store.RebuildSnapshots(ctx, sn.AggregateType, sn.StateVersion, sn.Fold)
		if err != nil {
			return fmt.Errorf("rebuilding %s snapshots (%d rewritten): %w", sn.AggregateType, n, err)
		}
		env.Log.Info("snapshots rebuilt", "aggregate_type", sn.AggregateType, "state_version", sn.StateVersion, "count", n)
		fmt.Fprintf(env.Stdout, "%s: %d snapshots rebuilt at state version %d\n", sn.AggregateType, n, sn.StateVersion)
	}
	return nil
}
