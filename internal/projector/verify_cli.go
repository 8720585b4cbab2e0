package projector

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/elastic/go-elasticsearch/v8"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"cqrsflow/internal/envelope"
	"cqrsflow/internal/esindex"
)

// VerifyOptions configures Verify (`projector verify`). Exactly one of
// IDs, Sample and All selects the aggregates.
type VerifyOptions struct {
	IDs    []string
	Sample int
	All    bool
	// Since keeps the aggregates whose latest event was recorded at or
	// after it (with Sample or All; zero: any).
	Since time.Time
	// Margin is added to the projection's sync lag: events younger than
	// both are in flight.
	Margin time.Duration
	// Repair writes the expected documents of drifted aggregates through
	// the versioned write path; DeleteUnexpected also deletes documents
	// that have no events.
	Repair, DeleteUnexpected bool
	// MaxDiffs bounds the differences kept for the report.
	MaxDiffs int
	PageRows int
	// Index is the alias the projection serves reads from; Topic its
	// event topic and Group its consumer group, whose position tells
	// what is in flight; Conn reaches Kafka.
	Index, Topic, Group string
	Conn                []kgo.Opt
	// Progress receives a line every ProgressEvery (nil: none).
	Progress      io.Writer
	ProgressEvery time.Duration
}

func (o *VerifyOptions) defaults() {
	if o.Margin <= 0 {
		o.Margin = DefaultVerifyMargin
	}
	if o.PageRows <= 0 {
		o.PageRows = DefaultVerifyPageRows
	}
	if o.ProgressEvery <= 0 {
		o.ProgressEvery = 5 * time.Second
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
}

// selection names the selection for the report.
func (o *VerifyOptions) selection() string {
	var s string
	switch {
	case len(o.IDs) > 0:
		s = fmt.Sprintf("%d given aggregates", len(o.IDs))
	case o.Sample > 0:
		s = fmt.Sprintf("a random sample of %d", o.Sample)
	default:
		s = "all"
	}
	if !o.Since.IsZero() {
		s += ", latest event since " + o.Since.UTC().Format(time.RFC3339)
	}
	return s
}

// VerifyReport is what Verify found (and repaired).
type VerifyReport struct {
	Projection string         `json:"projection"`
	Index      string         `json:"index"`
	Selection  string         `json:"selection"`
	StartedAt  time.Time      `json:"started_at"`
	Seconds    float64        `json:"duration_seconds"`
	Counts     map[string]int `json:"counts"`
	Checked    int            `json:"checked"`
	Drift      int            `json:"drift"`
	// InFlightAfter: events recorded after it counted as in flight.
	InFlightAfter time.Time `json:"in_flight_after"`
	// Differences are the first MaxDiffs drifted aggregates.
	Differences []Check `json:"differences"`
	// NotFound are given ids with neither events nor a document.
	NotFound []string     `json:"not_found,omitempty"`
	Repair   *RepairStats `json:"repair,omitempty"`
	Stats    VerifyStats  `json:"stats"`
}

// Unrepaired is the drift a repair did not fix (all of it without one).
func (r *VerifyReport) Unrepaired() int {
	if r.Repair == nil {
		return r.Drift
	}
	return r.Drift - r.Repair.Written - r.Repair.Deleted
}

// Verify checks the read model of proj against the event store and,
// with Repair, rewrites what drifted. Memory stays bounded: events are
// read PageRows at a time, documents by page, and only the first MaxDiffs
// differences are kept.
func Verify(ctx context.Context, opts VerifyOptions, proj Projection, es *elasticsearch.Client, events EventStore, log *slog.Logger) (*VerifyReport, error) {
	opts.defaults()
	rep := &VerifyReport{Projection: proj.Name(), Index: opts.Index, Selection: opts.selection(), StartedAt: time.Now().UTC(),
		Counts: map[string]int{}, Differences: []Check{}}
	for _, r := range Results {
		rep.Counts[r] = 0
	}
	cl, err := newClient(opts.Conn)
	if err != nil {
		return nil, fmt.Errorf("kafka client: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	holds, err := quarantineHolds(ctx, opts.Conn, adm, opts.Topic, proj.Name())
	if err != nil {
		return nil, err
	}
	store := &esStore{es: es, index: opts.Index}
	v := &verifier{proj: proj, events: events, store: store, pageRows: opts.PageRows,
		holds: func(ids []string) map[string][]heldVersion {
			out := map[string][]heldVersion{}
			for _, id := range ids {
				if h, ok := holds[id]; ok {
					out[id] = h
				}
			}
			return out
		},
		cutoff: func(ctx context.Context) (time.Time, error) {
			c, err := groupCutoff(ctx, opts.Conn, adm, opts.Group, opts.Topic, opts.Margin, log)
			if err == nil && (rep.InFlightAfter.IsZero() || c.Before(rep.InFlightAfter)) {
				rep.InFlightAfter = c
			}
			return c, err
		}}
	var fix *repairer
	if opts.Repair {
		rep.Repair = &RepairStats{Items: []RepairItem{}}
		fix = &repairer{store: store, es: es, deleteUnexpected: opts.DeleteUnexpected, stats: rep.Repair, maxItems: opts.MaxDiffs}
	}
	prog := progress{w: opts.Progress, every: opts.ProgressEvery, start: time.Now(), last: time.Now(), name: proj.Name()}
	emit := func(c Check) error {
		rep.Checked++
		rep.Counts[c.Result]++
		if IsDrift(c.Result) {
			rep.Drift++
			if len(rep.Differences) < opts.MaxDiffs {
				rep.Differences = append(rep.Differences, c)
			}
			if fix != nil {
				if err := fix.add(ctx, c); err != nil {
					return err
				}
			}
		}
		prog.tick(rep, &v.stats)
		return nil
	}
	if err := verifySelection(ctx, opts, v, es, emit, rep); err != nil {
		return nil, err
	}
	if fix != nil {
		if err := fix.flush(ctx); err != nil {
			return nil, err
		}
	}
	rep.Stats = v.stats
	rep.Seconds = time.Since(rep.StartedAt).Seconds()
	prog.done(rep)
	return rep, nil
}

// verifySelection runs the checks of the selected aggregates, then looks
// for documents without events among the selection's documents.
func verifySelection(ctx context.Context, opts VerifyOptions, v *verifier, es *elasticsearch.Client, emit func(Check) error, rep *VerifyReport) error {
	ev := v.events
	const chunk = 500
	switch {
	case len(opts.IDs) > 0:
		noEvents, err := v.check(ctx, opts.IDs, emit)
		if err != nil {
			return err
		}
		hits, err := v.store.MGet(ctx, noEvents)
		if err != nil {
			return err
		}
		var refs []esindex.DocRef
		for _, id := range noEvents {
			if h, ok := hits[id]; ok {
				refs = append(refs, h.Ref)
			} else {
				rep.NotFound = append(rep.NotFound, id)
			}
		}
		return v.unexpected(ctx, refs, emit)
	case opts.Sample > 0:
		err := ev.Sample(ctx, opts.Sample, opts.Since, chunk, func(ids []string) error {
			_, err := v.check(ctx, ids, emit)
			return err
		})
		if err != nil {
			return err
		}
		refs, err := esindex.Sample(ctx, es, opts.Index, opts.Sample)
		if err != nil {
			return err
		}
		return v.unexpected(ctx, refs, emit)
	}
	if opts.Since.IsZero() {
		if _, err := v.check(ctx, nil, emit); err != nil {
			return err
		}
	} else {
		for after := ""; ; {
			ids, err := ev.IDs(ctx, after, opts.Since, chunk)
			if err != nil {
				return err
			}
			if len(ids) > 0 {
				if _, err := v.check(ctx, ids, emit); err != nil {
					return err
				}
			}
			if len(ids) < chunk {
				break
			}
			after = ids[len(ids)-1]
		}
	}
	var query map[string]any
	if !opts.Since.IsZero() {
		query = map[string]any{"range": map[string]any{"recorded_at": map[string]any{"gte": opts.Since.UTC().Format(time.RFC3339Nano)}}}
	}
	return esindex.Scan(ctx, es, opts.Index, query, 1000, func(refs []esindex.DocRef) error {
		return v.unexpected(ctx, refs, emit)
	})
}

// quarantineHolds reads the projection's quarantine topic: the versions
// its aggregates are blocked at, and the versions operators skipped whose
// release records compaction has not removed yet.
func quarantineHolds(ctx context.Context, conn []kgo.Opt, adm *kadm.Client, topic, projection string) (map[string][]heldVersion, error) {
	recs, _, err := readToEnd(ctx, conn, adm, QuarantineTopic(topic))
	if err != nil {
		return nil, err
	}
	skips := map[string][]heldVersion{}
	blocked := foldQuarantine(recs, projection, func(id string, e QuarantineEntry) {
		if e.SkippedVersion > 0 {
			skips[id] = append(skips[id], heldVersion{version: e.SkippedVersion, kind: holdSkipped,
				why: fmt.Sprintf("version %d skipped by an operator (projector dlq skip)", e.SkippedVersion)})
		}
	})
	for id, e := range blocked {
		skips[id] = append(skips[id], heldVersion{version: e.BlockedVersion, kind: holdBlocked,
			why: fmt.Sprintf("quarantined at version %d (%s)", e.BlockedVersion, e.Reason)})
	}
	return skips, nil
}

// groupCutoff returns the moment after which an event may not be in the
// read model yet: the recorded_at of the oldest record the projection's
// group has not committed (every partition's record at its committed
// offset), or now when it is caught up, minus margin.
func groupCutoff(ctx context.Context, conn []kgo.Opt, adm *kadm.Client, group, topic string, margin time.Duration, log *slog.Logger) (time.Time, error) {
	cutoff := time.Now().Add(-margin)
	committed, err := adm.FetchOffsetsForTopics(ctx, group, topic)
	if err == nil {
		err = committed.Error()
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("fetching the committed offsets of %s: %w", group, err)
	}
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("listing end offsets of %s: %w", topic, err)
	}
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("listing start offsets of %s: %w", topic, err)
	}
	from := map[int32]kgo.Offset{}
	ends.Each(func(e kadm.ListedOffset) {
		at := int64(-1)
		if c, ok := committed.Lookup(topic, e.Partition); ok && c.Err == nil {
			at = c.At
		}
		if s, ok := starts.Lookup(topic, e.Partition); ok && at < s.Offset {
			at = s.Offset
		}
		if at >= 0 && at < e.Offset {
			from[e.Partition] = kgo.NewOffset().At(at)
		}
	})
	if len(from) == 0 {
		return cutoff, nil
	}
	oldest, err := firstRecordTimes(ctx, conn, topic, from)
	if err != nil {
		return time.Time{}, err
	}
	log.Debug("projection behind", "group", group, "partitions_behind", len(from), "oldest_pending", oldest)
	if c := oldest.Add(-margin); c.Before(cutoff) {
		cutoff = c
	}
	return cutoff, nil
}

// firstRecordTimes reads the record at each partition's offset in from and
// returns the oldest recorded_at among them (the record's timestamp when
// its value is no envelope).
func firstRecordTimes(ctx context.Context, conn []kgo.Opt, topic string, from map[int32]kgo.Offset) (time.Time, error) {
	cl, err := newClient(conn, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: from}))
	if err != nil {
		return time.Time{}, fmt.Errorf("kafka client: %w", err)
	}
	defer cl.Close()
	var oldest time.Time
	got := map[int32]bool{}
	deadline := time.Now().Add(15 * time.Second)
	for len(got) < len(from) {
		pctx, cancel := context.WithDeadline(ctx, deadline)
		f := cl.PollFetches(pctx)
		timedOut := pctx.Err() != nil
		cancel()
		if err := ctx.Err(); err != nil {
			return time.Time{}, err
		}
		if timedOut && f.NumRecords() == 0 {
			return time.Time{}, errors.New("reading the oldest pending records of " + topic + ": no answer in 15s")
		}
		f.EachRecord(func(r *kgo.Record) {
			if got[r.Partition] {
				return
			}
			got[r.Partition] = true
			ts := r.Timestamp
			if env, err := envelope.Decode(r.Value); err == nil {
				ts = env.RecordedAt
			}
			if oldest.IsZero() || ts.Before(oldest) {
				oldest = ts
			}
		})
	}
	return oldest, nil
}

// progress writes a progress line every so often.
type progress struct {
	w           io.Writer
	every       time.Duration
	start, last time.Time
	name        string
}

func (p *progress) tick(rep *VerifyReport, st *VerifyStats) {
	if now := time.Now(); now.Sub(p.last) >= p.every {
		p.last = now
		fmt.Fprintf(p.w, "verify %s: %d aggregates checked, %d drift, %d events read (%s)\n",
			p.name, rep.Checked, rep.Drift, st.Events, now.Sub(p.start).Round(time.Second))
	}
}

func (p *progress) done(rep *VerifyReport) {
	fmt.Fprintf(p.w, "verify %s: done: %d aggregates checked, %d drift, %d events read in %s\n",
		p.name, rep.Checked, rep.Drift, rep.Stats.Events, time.Since(p.start).Round(time.Millisecond))
}
