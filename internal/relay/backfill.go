package relay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Backfill republishes stored events from the events table to a topic:
// the same record the live relay publishes (key, envelope built by
// envelope.AppendJSON, headers), in global-position order, which is
// version order per aggregate. It is how a deleted topic is filled again
// and how a new topic gets the history before its cut-over
// (docs/operations.md, "Repartitioning an aggregate type").
//
// Why it is safe beside the live relay: backfill only sends events
// already committed, each aggregate's in version order, through an
// idempotent producer with key partitioning. Whichever of the two
// producers sends a version first, each sends an aggregate's versions in
// order, so the first occurrences of a key's versions on the topic stay
// in version order; later copies are older versions again, which the
// projector counts as duplicates and ignores.
//
// Events are published as stored: a schema upcast happens in the
// projector, on read. Events the relay never published stay unpublished:
// discarded dead letters, and a dead letter's event with its aggregate's
// later events (the relay holds them too), so backfill never puts a
// version on the topic ahead of one the relay is holding back.
//
// Where the run got to is kept in backfill_progress under its name: the
// position advances only after Kafka acknowledged a whole batch, so a
// run killed at any point and started again publishes at most one batch
// twice and skips nothing.

// BackfillSelection says which events of one aggregate type to publish.
type BackfillSelection struct {
	AggregateType string
	// AggregateIDs limits the run to these aggregates (empty: all).
	AggregateIDs []string
	// FromPosition: events at or above this global position (0: all).
	FromPosition int64
	// FromTime: events recorded at or after this time (zero: all).
	FromTime time.Time
}

// key is the selection in one canonical line; a run resumed with a
// different one is refused.
func (s BackfillSelection) key() string {
	ids := slices.Clone(s.AggregateIDs)
	slices.Sort(ids)
	ids = slices.Compact(ids)
	var b strings.Builder
	fmt.Fprintf(&b, "from_position=%d", s.FromPosition)
	if !s.FromTime.IsZero() {
		fmt.Fprintf(&b, " from_time=%s", s.FromTime.UTC().Format(time.RFC3339Nano))
	}
	if len(ids) > 0 {
		b.WriteString(" aggregates=")
		for i, id := range ids {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(strconv.Quote(id))
		}
	}
	return b.String()
}

// BackfillOptions configure one invocation of Backfill.
type BackfillOptions struct {
	Run       string // the progress key (required)
	Topic     string // where to publish (required; must exist)
	Selection BackfillSelection
	BatchSize int  // events per batch; 0: 1000
	Restart   bool // forget the run's recorded progress and start over
	// LockTimeout bounds the wait for in-flight appends at the start
	// (horizon); 0: 5s.
	LockTimeout time.Duration
	// Progress receives a line every ProgressEvery (0: 2s) and at the end.
	Progress      io.Writer
	ProgressEvery time.Duration
}

// BackfillResult is what one invocation did.
type BackfillResult struct {
	Resumed   bool  // the run had recorded progress and continued from it
	Published int64 // records acknowledged in this invocation
	Total     int64 // records acknowledged over the whole run
	Position  int64 // the run's position at the end
	Target    int64 // the horizon this invocation published up to
}

// ErrBackfillMismatch: a run of that name exists with another aggregate
// type, selection or topic.
var ErrBackfillMismatch = errors.New("backfill run exists with another selection")

// Backfill publishes the selected events above the run's recorded
// position (or the selection's start) up to the horizon: every event
// committed when it starts (see horizon). It returns when all of them
// are acknowledged, on the first error, or when ctx ends; the recorded
// position is then that of the last batch acknowledged whole.
func Backfill(ctx context.Context, pool *pgxpool.Pool, p Producer, m *BackfillMetrics, o BackfillOptions, log *slog.Logger) (BackfillResult, error) {
	if o.Run == "" || o.Topic == "" || o.Selection.AggregateType == "" || o.Selection.FromPosition < 0 {
		return BackfillResult{}, fmt.Errorf("%w: a backfill needs a run name, a topic, an aggregate type and a position >= 0", ErrConfig)
	}
	if o.BatchSize <= 0 {
		o.BatchSize = 1000
	}
	if o.LockTimeout <= 0 {
		o.LockTimeout = 5 * time.Second
	}
	if o.ProgressEvery <= 0 {
		o.ProgressEvery = 2 * time.Second
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	st := backfillStore{pool: pool, run: o.Run}
	cursor, total, resumed, err := st.start(ctx, o)
	if err != nil {
		return BackfillResult{}, err
	}
	target, err := st.horizon(ctx, o.LockTimeout)
	if err != nil {
		return BackfillResult{}, err
	}
	res := BackfillResult{Resumed: resumed, Total: total, Position: cursor, Target: target}
	m.position.Set(float64(cursor))
	m.target.Set(float64(target))
	log.Info("backfill starting", "run", o.Run, "topic", o.Topic, "aggregate_type", o.Selection.AggregateType,
		"resumed", resumed, "position", cursor, "target", target)
	started, last := time.Now(), time.Now()
	for res.Position < target {
		rows, err := st.batch(ctx, o.Selection, res.Position, target, o.BatchSize)
		if err != nil {
			return res, err
		}
		next := target // nothing more selected up to the horizon
		if len(rows) > 0 {
			if err := produceAll(ctx, p, o.Topic, rows); err != nil {
				return res, fmt.Errorf("publishing events %d..%d to %s: %w", rows[0].GlobalPosition, rows[len(rows)-1].GlobalPosition, o.Topic, err)
			}
			if len(rows) == o.BatchSize {
				next = rows[len(rows)-1].GlobalPosition
			}
		}
		if err := st.advance(ctx, next, int64(len(rows))); err != nil {
			return res, err
		}
		res.Position, res.Published, res.Total = next, res.Published+int64(len(rows)), res.Total+int64(len(rows))
		m.published.WithLabelValues(o.Topic).Add(float64(len(rows)))
		m.position.Set(float64(next))
		if time.Since(last) >= o.ProgressEvery {
			last = time.Now()
			res.progress(o.Progress, o.Run, started)
		}
	}
	if err := st.finish(ctx); err != nil {
		return res, err
	}
	res.progress(o.Progress, o.Run, started)
	fmt.Fprintf(o.Progress, "backfill %s: done; %d record(s) on %s over the run\n", o.Run, res.Total, o.Topic)
	return res, nil
}

func (r BackfillResult) progress(w io.Writer, run string, started time.Time) {
	rate := float64(r.Published) / max(time.Since(started).Seconds(), 0.001)
	fmt.Fprintf(w, "backfill %s: position %d of %d, %d published now (%.0f/s), %d over the run\n",
		run, r.Position, r.Target, r.Published, rate, r.Total)
}

// produceAll sends every row to topic and waits for all acknowledgements;
// the first error is returned. When ctx ends first it stops waiting (a
// record a restarting broker holds does not heed ctx) and the batch
// counts as not published.
func produceAll(ctx context.Context, p Producer, topic string, rows []row) error {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	// Every record is built and checked before the first is produced:
	// nothing of the batch is buffered when one cannot go.
	recs := make([]*kgo.Record, len(rows))
	for i := range rows {
		rec, err := record(topic, &rows[i])
		if err == nil {
			err = oversized(rec)
		}
		if err != nil {
			return fmt.Errorf("event at position %d: %w", rows[i].GlobalPosition, err)
		}
		recs[i] = rec
	}
	for _, rec := range recs {
		wg.Add(1)
		p.Produce(ctx, rec, func(_ *kgo.Record, err error) {
			defer wg.Done()
			if err != nil {
				mu.Lock()
				if first == nil {
					first = err
				}
				mu.Unlock()
			}
		})
	}
	acked := make(chan struct{})
	go func() { wg.Wait(); close(acked) }()
	_ = p.Flush(ctx) // sends the batch at once (ProducerOpts); the promises tell
	select {
	case <-acked:
	case <-ctx.Done():
		return fmt.Errorf("stopped waiting for acknowledgements: %w", ctx.Err())
	}
	mu.Lock()
	defer mu.Unlock()
	return first
}
