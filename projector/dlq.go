package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"cqrsflow/internal/cli"
	"cqrsflow/internal/config"
	"cqrsflow/internal/envelope"
	"cqrsflow/internal/esindex"
	"cqrsflow/internal/projector"
)

var dlqCommand = &cli.Command{Name: "dlq", Summary: "inspect and redrive dead letters and quarantined aggregates", Commands: []*cli.Command{
	{Name: "list", Summary: "list dead letters (pending unless --all) and quarantined aggregates", Setup: setupDLQList},
	{Name: "show", Summary: "show dead letters in full: an aggregate's (--aggregate [--version]) or one (--dlq-offset)", Setup: setupDLQShow},
	{Name: "redrive", Summary: "apply the pending dead letters of the selected aggregates in version order; release what applied", Setup: setupDLQRedrive},
	{Name: "skip", Summary: "drop one event on purpose (--aggregate, --version), release the aggregate and redrive the rest", Setup: setupDLQSkip},
}}

// aggregateFlag is --aggregate: an id, told apart from "not given" so an
// explicitly empty one is refused.
type aggregateFlag struct {
	v   string
	set bool
}

func (f *aggregateFlag) String() string     { return f.v }
func (f *aggregateFlag) Set(s string) error { f.v, f.set = s, true; return nil }

func (f *aggregateFlag) validate(required bool) error {
	switch {
	case !f.set && required:
		return errors.New("--aggregate: required")
	case f.set && f.v == "":
		return errors.New("--aggregate: empty")
	case len(f.v) > envelope.MaxAggregateIDBytes:
		return fmt.Errorf("--aggregate: %d bytes, longer than the %d an aggregate id can have", len(f.v), envelope.MaxAggregateIDBytes)
	}
	return nil
}

// dlqFlags are the settings every dlq command shares.
type dlqFlags struct {
	c       cfg
	name    string
	p       projector.Projection
	asJSON  bool
	timeout time.Duration
	check   func() error
}

func registerDLQ(s *config.Set) *dlqFlags {
	d := &dlqFlags{}
	d.c.register(s)
	d.check = projectionFlag(s, &d.name, &d.p)
	fs := s.FlagSet()
	fs.BoolVar(&d.asJSON, "json", false, "print JSON instead of a table")
	fs.DurationVar(&d.timeout, "timeout", 2*time.Minute, "give up after this long (Kafka or Elasticsearch unavailable)")
	return d
}

func (d *dlqFlags) validate(more ...error) error {
	_, err := d.c.validate()
	errs := append([]error{err, d.check()}, more...)
	if d.timeout <= 0 {
		errs = append(errs, errors.New("--timeout: must be > 0"))
	}
	return errors.Join(errs...)
}

func validReason(r string) error {
	if r != "" && !projector.ValidReason(r) {
		return fmt.Errorf("--reason: %q is not one of %s", r, strings.Join(projector.Reasons, ", "))
	}
	return nil
}

// run builds the admin of the projection and runs fn with it.
func (d *dlqFlags) run(ctx context.Context, env cli.Env, fn func(context.Context, *projector.DLQAdmin) error) error {
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	es, err := d.c.Elasticsearch.Client()
	if err != nil {
		return err
	}
	conn, err := d.c.Kafka.Opts()
	if err != nil {
		return err
	}
	topic := envelope.Topic(d.c.TopicPrefix, d.p.AggregateType())
	a, err := projector.NewDLQAdmin(d.p, topic, conn, es, esindex.AliasName(d.c.IndexPrefix, d.p.Name()), env.Log)
	if err != nil {
		return err
	}
	defer a.Close()
	return fn(ctx, a)
}

func setupDLQList(s *config.Set) cli.Action {
	d := registerDLQ(s)
	var (
		agg    aggregateFlag
		reason string
		all    bool
		limit  int
	)
	fs := s.FlagSet()
	fs.Var(&agg, "aggregate", "only this aggregate id")
	fs.StringVar(&reason, "reason", "", "only this reason code ("+strings.Join(projector.Reasons, ", ")+")")
	fs.BoolVar(&all, "all", false, "include resolved dead letters (the read model has their version)")
	fs.IntVar(&limit, "limit", 200, "table rows at most (0: all; --json prints all)")
	return cli.Action{
		Quiet: true,
		Validate: func() error {
			var more []error
			if limit < 0 {
				more = append(more, errors.New("--limit: must be >= 0"))
			}
			return d.validate(append(more, agg.validate(false), validReason(reason))...)
		},
		Run: func(ctx context.Context, env cli.Env) error {
			return d.run(ctx, env, func(ctx context.Context, a *projector.DLQAdmin) error {
				l, err := a.List(ctx, projector.DLQFilter{AggregateID: agg.v, Reason: reason, All: all})
				if err != nil {
					return err
				}
				return projector.WriteListing(env.Stdout, l, d.asJSON, limit)
			})
		},
	}
}

func setupDLQShow(s *config.Set) cli.Action {
	d := registerDLQ(s)
	var (
		agg     aggregateFlag
		version int64
		at      string
	)
	fs := s.FlagSet()
	fs.Var(&agg, "aggregate", "the aggregate id")
	fs.Int64Var(&version, "version", 0, "only this version of the aggregate")
	fs.StringVar(&at, "dlq-offset", "", "one dead letter by its DLQ position partition:offset (records of no aggregate)")
	var part int32
	var off int64
	return cli.Action{
		Quiet: true,
		Validate: func() error {
			var more []error
			switch {
			case agg.set == (at != ""):
				more = append(more, errors.New("show: give exactly one of --aggregate and --dlq-offset"))
			case at != "":
				var err error
				if part, off, err = parseDLQOffset(at); err != nil {
					more = append(more, err)
				}
			}
			if version < 0 || (version > 0 && !agg.set) {
				more = append(more, errors.New("--version: must be >= 1, with --aggregate"))
			}
			return d.validate(append(more, agg.validate(false))...)
		},
		Run: func(ctx context.Context, env cli.Env) error {
			return d.run(ctx, env, func(ctx context.Context, a *projector.DLQAdmin) error {
				recs, err := a.Show(ctx, agg.v, version, part, off)
				if err != nil {
					return err
				}
				return projector.WriteRecords(env.Stdout, recs, d.asJSON)
			})
		},
	}
}

func parseDLQOffset(s string) (int32, int64, error) {
	ps, os, ok := strings.Cut(s, ":")
	p, err1 := strconv.ParseInt(ps, 10, 32)
	o, err2 := strconv.ParseInt(os, 10, 64)
	if !ok || err1 != nil || err2 != nil || p < 0 || o < 0 {
		return 0, 0, fmt.Errorf("--dlq-offset: %q is not partition:offset", s)
	}
	return int32(p), o, nil
}

func setupDLQRedrive(s *config.Set) cli.Action {
	d := registerDLQ(s)
	var (
		agg    aggregateFlag
		reason string
	)
	fs := s.FlagSet()
	fs.Var(&agg, "aggregate", "only this aggregate id")
	fs.StringVar(&reason, "reason", "", "only aggregates with a pending dead letter (or quarantine) of this reason code")
	return cli.Action{
		Quiet:    true,
		Validate: func() error { return d.validate(agg.validate(false), validReason(reason)) },
		Run: func(ctx context.Context, env cli.Env) error {
			return d.run(ctx, env, func(ctx context.Context, a *projector.DLQAdmin) error {
				rep, err := a.Redrive(ctx, projector.DLQFilter{AggregateID: agg.v, Reason: reason})
				if err != nil {
					return err
				}
				return projector.WriteRedrive(env.Stdout, rep, d.asJSON)
			})
		},
	}
}

func setupDLQSkip(s *config.Set) cli.Action {
	d := registerDLQ(s)
	var (
		agg     aggregateFlag
		version int64
	)
	fs := s.FlagSet()
	fs.Var(&agg, "aggregate", "the aggregate id (required)")
	fs.Int64Var(&version, "version", 0, "the version to drop (required; the document must be at the version before it)")
	return cli.Action{
		Quiet: true,
		Validate: func() error {
			var more []error
			if version < 1 {
				more = append(more, errors.New("--version: required, >= 1"))
			}
			return d.validate(append(more, agg.validate(true))...)
		},
		Run: func(ctx context.Context, env cli.Env) error {
			return d.run(ctx, env, func(ctx context.Context, a *projector.DLQAdmin) error {
				rep, err := a.Skip(ctx, agg.v, version)
				if err != nil {
					return err
				}
				return projector.WriteSkip(env.Stdout, rep, d.asJSON)
			})
		},
	}
}
