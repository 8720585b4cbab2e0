package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"cqrsflow/chaos/checker"
	"cqrsflow/internal/outbox"
)

// drainState is what the drain waits for.
type drainState struct {
	outbox int64 // outbox rows other than the held rows of oversize aggregates
	held   int64 // outbox rows of oversize aggregates held behind their dead letters
	// undead are the oversize aggregates with events in the store and no
	// dead letter yet; dead counts the rows of outbox_dead_letters.
	undead  []string
	dead    int64
	lag     map[string]int64
	metrics []checker.Sample
	err     error
}

func (d drainState) truthDrained() bool {
	if d.err != nil || d.outbox != 0 || len(d.undead) != 0 {
		return false
	}
	for _, l := range d.lag {
		if l != 0 {
			return false
		}
	}
	return true
}

// metricsSettled: the gauges that must read 0 do, and the relay's dead
// letters and held rows read what the store holds.
func (d drainState) metricsSettled() bool {
	for _, s := range d.metrics {
		if want, ok := d.gaugeWant(s.Name); ok && s.Value != want {
			return false
		}
	}
	return true
}

var zeroGauges = []string{"cqrsflow_outbox_pending_events", "cqrsflow_outbox_oldest_pending_age_seconds",
	"cqrsflow_projector_consumer_lag_records", "cqrsflow_projector_sync_lag_seconds", "cqrsflow_projector_parked_events"}

// gaugeWant is the value a gauge the drain waits for must read.
func (d drainState) gaugeWant(name string) (float64, bool) {
	switch name {
	case "cqrsflow_relay_dead_letters":
		return float64(d.dead), true
	case "cqrsflow_relay_held_rows":
		return float64(d.held), true
	}
	return 0, slices.Contains(zeroGauges, name)
}

func (d drainState) String() string {
	if d.err != nil {
		return d.err.Error()
	}
	var off []string
	for _, s := range d.metrics {
		if want, ok := d.gaugeWant(s.Name); ok && s.Value != want {
			off = append(off, fmt.Sprintf("%s %s%v=%g (want %g)", s.Process, s.Name, s.Labels, s.Value, want))
		}
	}
	return fmt.Sprintf("outbox %d rows (and %d held), %d dead letters, oversize aggregates not dead-lettered yet %v, group lag %v, unsettled gauges [%s]",
		d.outbox, d.held, d.dead, d.undead, d.lag, strings.Join(off, "; "))
}

// observe reads the truth (outbox, dead letters, group offsets) and the
// metrics of the base processes.
func (p *pipeline) observe(ctx context.Context, oversize []string) drainState {
	var d drainState
	d.err = p.observeOutbox(ctx, oversize, &d)
	if d.err != nil {
		return d
	}
	if d.lag, d.err = p.groupLag(ctx); d.err != nil {
		return d
	}
	for _, c := range baseComponents {
		if c == "api" {
			continue
		}
		s, err := scrape(ctx, p.bins[c])
		if err != nil {
			d.err = err
			return d
		}
		d.metrics = append(d.metrics, s...)
	}
	return d
}

// observeOutbox counts the outbox rows the relay has yet to publish (the
// held rows of the oversize aggregates $1 apart), the held ones, the dead
// letters, and lists the oversize aggregates with events but no dead
// letter yet.
func (p *pipeline) observeOutbox(ctx context.Context, oversize []string, d *drainState) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, p.pgURL)
	if err != nil {
		return fmt.Errorf("connecting to read the outbox: %w", err)
	}
	defer conn.Close(context.Background())
	if oversize == nil {
		oversize = []string{}
	}
	err = conn.QueryRow(ctx, `SELECT
		(SELECT count(*) FROM outbox o WHERE NOT (o.aggregate_id = ANY($1::text[]) AND `+outbox.HeldSQL+`)),
		(SELECT count(*) FROM outbox o WHERE o.aggregate_id = ANY($1::text[]) AND `+outbox.HeldSQL+`),
		(SELECT count(*) FROM outbox_dead_letters),
		ARRAY(SELECT DISTINCT e.aggregate_id FROM events e WHERE e.aggregate_id = ANY($1::text[])
			AND NOT EXISTS (SELECT 1 FROM outbox_dead_letters d WHERE d.aggregate_id = e.aggregate_id) ORDER BY 1)`,
		oversize).Scan(&d.outbox, &d.held, &d.dead, &d.undead)
	if err != nil {
		return fmt.Errorf("reading the outbox: %w", err)
	}
	return nil
}

// drain waits, bounded, until every base binary is ready, the outbox is
// empty but for the oversize aggregates' rows held behind their dead
// letters, every oversize aggregate's dead letter is there, the consumer
// groups committed up to the end of their topics and the gauges read 0
// (the relay's dead letters and held rows: what the store holds). It returns how long that took and the last state;
// the checker judges what did not drain.
func (p *pipeline) drain(ctx context.Context, timeout time.Duration, oversize []string) (time.Duration, drainState) {
	start := time.Now()
	deadline := start.Add(timeout)
	for _, c := range baseComponents {
		b := p.bins[c]
		if b.pid() == 0 {
			p.h.log.Warn("not running before the drain; starting it", "process", c)
			_ = b.start()
		}
		if err := b.waitHTTP(ctx, "/readyz", max(time.Until(deadline), time.Second)); err != nil {
			p.h.log.Warn("not ready for the drain", "process", c, "err", firstLine(err.Error()))
		}
	}
	var (
		d          drainState
		truthSince time.Time
		lastNote   = time.Now()
	)
	for {
		d = p.observe(ctx, oversize)
		if d.truthDrained() {
			if truthSince.IsZero() {
				truthSince = time.Now()
			}
			// The gauges follow within their refresh intervals (2 s for
			// the outbox, LAG_INTERVAL=1s here); 30 s is plenty.
			if d.metricsSettled() || time.Since(truthSince) > 30*time.Second {
				return time.Since(start), d
			}
		} else {
			truthSince = time.Time{}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return time.Since(start), d
		}
		if time.Since(lastNote) > 10*time.Second {
			p.h.log.Info("draining", "elapsed", time.Since(start).Round(time.Second).String(), "state", d.String())
			lastNote = time.Now()
		}
		time.Sleep(time.Second)
	}
}
