package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"

	"cqrsflow/internal/cli"
	"cqrsflow/internal/config"
	"cqrsflow/internal/relay"
)

// deadCommand manages the outbox rows the relay dead-lettered.
var deadCommand = &cli.Command{
	Name:    "dead",
	Summary: "list, retry or discard the outbox rows Kafka refused for good (their aggregates' later rows are held)",
	Commands: []*cli.Command{
		{Name: "list", Summary: "show the dead letters and how many rows each holds back", Setup: setupDeadList},
		{Name: "retry", Summary: "put dead letters back into the outbox, ahead of the rows they hold back", Setup: setupDeadRetry},
		{Name: "discard", Summary: "drop one dead letter from publication (it stays in the events table); its held rows flow", Setup: setupDeadDiscard},
	},
}

// maxAggregateIDBytes bounds --aggregate: longer input is a mistake, not
// an id.
const maxAggregateIDBytes = 1024

// idList is a repeatable --id flag of outbox ids.
type idList []int64

func (l *idList) String() string {
	s := make([]string, len(*l))
	for i, id := range *l {
		s[i] = strconv.FormatInt(id, 10)
	}
	return strings.Join(s, ",")
}

func (l *idList) Set(v string) error {
	id, err := strconv.ParseInt(v, 10, 64)
	if err != nil || id < 1 {
		return fmt.Errorf("%q is not an outbox id (a positive integer)", v)
	}
	*l = append(*l, id)
	return nil
}

// deadFlags are the settings the dead commands share.
type deadFlags struct {
	postgresURL string
	sel         relay.Selection
	ids         idList
	fs          *flag.FlagSet
}

func (f *deadFlags) register(s *config.Set, selection bool) {
	s.URL(&f.postgresURL, "POSTGRES_URL", config.DefaultPostgresURL, "PostgreSQL URL (may carry search_path)")
	f.fs = s.FlagSet()
	if selection {
		f.fs.StringVar(&f.sel.AggregateType, "aggregate-type", "", "only dead letters of this aggregate type")
		f.fs.StringVar(&f.sel.AggregateID, "aggregate", "", "only dead letters of the aggregate with this id")
	}
}

// validate checks the shared settings; given says which flags were set.
func (f *deadFlags) validate() []error {
	var errs []error
	if f.postgresURL == "" {
		errs = append(errs, errors.New("POSTGRES_URL is empty"))
	}
	given := map[string]bool{}
	f.fs.Visit(func(fl *flag.Flag) { given[fl.Name] = true })
	if given["aggregate"] {
		if a := f.sel.AggregateID; strings.TrimSpace(a) == "" || len(a) > maxAggregateIDBytes || !utf8.ValidString(a) {
			errs = append(errs, fmt.Errorf("--aggregate: want an aggregate id (1..%d bytes of UTF-8), got %q", maxAggregateIDBytes, truncate(a, 40)))
		}
	}
	if given["aggregate-type"] && !namePart.MatchString(f.sel.AggregateType) {
		errs = append(errs, fmt.Errorf("--aggregate-type: %q is not an aggregate type", truncate(f.sel.AggregateType, 40)))
	}
	return errs
}

func (f *deadFlags) connect(ctx context.Context) (*pgx.Conn, error) {
	conn, err := pgx.Connect(ctx, f.postgresURL)
	if err != nil {
		return nil, fmt.Errorf("connecting to PostgreSQL: %w", err)
	}
	return conn, nil
}

func setupDeadList(s *config.Set) cli.Action {
	var f deadFlags
	f.register(s, true)
	var asJSON bool
	var limit int
	s.FlagSet().BoolVar(&asJSON, "json", false, "print JSON (an array) instead of a table")
	s.FlagSet().IntVar(&limit, "limit", 1000, "at most this many dead letters (lowest ids first)")
	return cli.Action{Quiet: true, Validate: func() error {
		errs := f.validate()
		if limit < 1 || limit > 100000 {
			errs = append(errs, fmt.Errorf("--limit must be in 1..100000, got %d", limit))
		}
		return errors.Join(errs...)
	}, Run: func(ctx context.Context, env cli.Env) error {
		conn, err := f.connect(ctx)
		if err != nil {
			return err
		}
		defer conn.Close(context.WithoutCancel(ctx))
		dls, err := relay.ListDeadLetters(ctx, conn, f.sel, limit)
		if err != nil {
			return err
		}
		if asJSON {
			return writeJSON(env.Stdout, dls)
		}
		writeTable(env.Stdout, dls)
		return nil
	}}
}

func setupDeadRetry(s *config.Set) cli.Action {
	var f deadFlags
	f.register(s, true)
	var all bool
	s.FlagSet().Var(&f.ids, "id", "retry the dead letter with this id (repeatable)")
	s.FlagSet().BoolVar(&all, "all", false, "retry every dead letter (of --aggregate-type if given)")
	return cli.Action{Quiet: true, Validate: func() error {
		errs := f.validate()
		modes := 0
		for _, set := range []bool{len(f.ids) > 0, f.sel.AggregateID != "", all} {
			if set {
				modes++
			}
		}
		if modes != 1 {
			errs = append(errs, errors.New("name what to retry: --id N (repeatable), --aggregate ID or --all"))
		}
		if len(f.ids) > 0 && f.sel.AggregateType != "" {
			errs = append(errs, errors.New("--aggregate-type goes with --aggregate or --all, not with --id"))
		}
		f.sel.IDs, f.sel.All = f.ids, all
		return errors.Join(errs...)
	}, Run: func(ctx context.Context, env cli.Env) error {
		conn, err := f.connect(ctx)
		if err != nil {
			return err
		}
		defer conn.Close(context.WithoutCancel(ctx))
		moved, err := relay.RetryDeadLetters(ctx, conn, f.sel)
		if errors.Is(err, relay.ErrNoDeadLetter) {
			return cli.UsageError(err)
		}
		if err != nil {
			return err
		}
		reportRetry(env, moved)
		return nil
	}}
}

func reportRetry(env cli.Env, moved []relay.DeadLetter) {
	if len(moved) == 0 {
		fmt.Fprintln(env.Stdout, "no dead letters to retry")
		return
	}
	held := int64(0)
	for _, d := range moved {
		held += d.Held
		env.Log.Info("dead letter moved back to the outbox", "outbox_id", d.ID, "event_id", d.EventID,
			"aggregate_type", d.AggregateType, "aggregate_id", d.AggregateID, "version", d.Version, "held_rows", d.Held)
	}
	fmt.Fprintf(env.Stdout, "moved %d dead letter(s) back to the outbox under their original ids; each is published before the %d row(s) held behind them:\n", len(moved), held)
	for _, d := range moved {
		fmt.Fprintf(env.Stdout, "  id %d  %s/%s  version %d  (%s)  %d held row(s) follow\n", d.ID, d.AggregateType, d.AggregateID, d.Version, d.Reason, d.Held)
	}
	fmt.Fprintln(env.Stdout, "If Kafka still refuses one, the relay dead-letters it again after its attempts: check `outbox-relay dead list`.")
}

func setupDeadDiscard(s *config.Set) cli.Action {
	var f deadFlags
	f.register(s, false)
	var yes bool
	s.FlagSet().Var(&f.ids, "id", "the dead letter to discard")
	s.FlagSet().BoolVar(&yes, "yes", false, "really discard: the event is never published (it stays in the events table)")
	return cli.Action{Quiet: true, Validate: func() error {
		errs := f.validate()
		if len(f.ids) != 1 {
			errs = append(errs, fmt.Errorf("name exactly one dead letter with --id N (got %d)", len(f.ids)))
		}
		return errors.Join(errs...)
	}, Run: func(ctx context.Context, env cli.Env) error {
		conn, err := f.connect(ctx)
		if err != nil {
			return err
		}
		defer conn.Close(context.WithoutCancel(ctx))
		id := f.ids[0]
		if !yes {
			dls, err := relay.ListDeadLetters(ctx, conn, relay.Selection{IDs: []int64{id}}, 1)
			if err != nil {
				return err
			}
			if len(dls) == 0 {
				return cli.UsageError(fmt.Errorf("%w with id %d (see `outbox-relay dead list`)", relay.ErrNoDeadLetter, id))
			}
			writeTable(env.Stdout, dls)
			return cli.UsageError(errors.New("not discarded: add --yes to drop this event from publication for good"))
		}
		d, err := relay.DiscardDeadLetter(ctx, conn, id)
		if errors.Is(err, relay.ErrNoDeadLetter) {
			return cli.UsageError(err)
		}
		if err != nil {
			return err
		}
		env.Log.Warn("dead letter discarded: the event will not be published", "outbox_id", d.ID, "event_id", d.EventID,
			"aggregate_type", d.AggregateType, "aggregate_id", d.AggregateID, "version", d.Version, "reason", d.Reason, "released_rows", d.Held)
		fmt.Fprintf(env.Stdout, "discarded dead letter %d: event %s (%s/%s version %d, %s) will not be published; it stays in the events table and is recorded in outbox_discarded.\n%d held row(s) of the aggregate are published next.\n",
			d.ID, d.EventID, d.AggregateType, d.AggregateID, d.Version, d.Reason, d.Held)
		return nil
	}}
}

func writeJSON(w io.Writer, dls []relay.DeadLetter) error {
	if dls == nil {
		dls = []relay.DeadLetter{}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(dls)
}

func writeTable(w io.Writer, dls []relay.DeadLetter) {
	if len(dls) == 0 {
		fmt.Fprintln(w, "no dead letters")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tAGGREGATE\tVERSION\tEVENT TYPE\tREASON\tATTEMPTS\tDEAD-LETTERED\tHELD\tERROR")
	held := int64(0)
	for _, d := range dls {
		held += d.Held
		fmt.Fprintf(tw, "%d\t%s/%s\t%d\t%s\t%s\t%d\t%s\t%d\t%s\n", d.ID, d.AggregateType, truncate(d.AggregateID, 40), d.Version,
			d.EventType, d.Reason, d.Attempts, d.DeadLetteredAt.UTC().Format(time.RFC3339), d.Held, truncate(oneLine(d.Error), 80))
	}
	tw.Flush()
	fmt.Fprintf(w, "%d dead letter(s), %d row(s) held behind them\n", len(dls), held)
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// truncate shortens s to at most n runes for display.
func truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}
