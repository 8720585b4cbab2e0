package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"cqrsflow/chaos/checker"
)

// drainState is what the drain waits for.
type drainState struct {
	outbox  int64
	lag     map[string]int64
	metrics []checker.Sample
	err     error
}

func (d drainState) truthDrained() bool {
	if d.err != nil || d.outbox != 0 {
		return false
	}
	for _, l := range d.lag {
		if l != 0 {
			return false
		}
	}
	return true
}

func (d drainState) metricsZero() bool {
	for _, s := range d.metrics {
		for _, names := range zeroGauges {
			if s.Name == names && s.Value != 0 {
				return false
			}
		}
	}
	return true
}

var zeroGauges = []string{"cqrsflow_outbox_pending_events", "cqrsflow_outbox_oldest_pending_age_seconds",
	"cqrsflow_projector_consumer_lag_records", "cqrsflow_projector_sync_lag_seconds", "cqrsflow_projector_parked_events"}

func (d drainState) String() string {
	if d.err != nil {
		return d.err.Error()
	}
	var nonzero []string
	for _, s := range d.metrics {
		if s.Value != 0 {
			for _, g := range zeroGauges {
				if s.Name == g {
					nonzero = append(nonzero, fmt.Sprintf("%s %s%v=%g", s.Process, s.Name, s.Labels, s.Value))
				}
			}
		}
	}
	return fmt.Sprintf("outbox %d rows, group lag %v, nonzero gauges [%s]", d.outbox, d.lag, strings.Join(nonzero, "; "))
}

// observe reads the truth (outbox, group offsets) and the metrics of the
// base processes.
func (p *pipeline) observe(ctx context.Context) drainState {
	var d drainState
	d.outbox, d.err = p.countOutbox(ctx)
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

func (p *pipeline) countOutbox(ctx context.Context) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, p.pgURL)
	if err != nil {
		return 0, fmt.Errorf("connecting to count the outbox: %w", err)
	}
	defer conn.Close(context.Background())
	var n int64
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM outbox").Scan(&n); err != nil {
		return 0, fmt.Errorf("counting the outbox: %w", err)
	}
	return n, nil
}

// drain waits, bounded, until every base binary is ready, the outbox is
// empty, the consumer groups committed up to the end of their topics and
// the gauges read 0. It returns how long that took and the last state;
// the checker judges what did not drain.
func (p *pipeline) drain(ctx context.Context, timeout time.Duration) (time.Duration, drainState) {
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
		d = p.observe(ctx)
		if d.truthDrained() {
			if truthSince.IsZero() {
				truthSince = time.Now()
			}
			// The gauges follow within their refresh intervals (2 s for
			// the outbox, LAG_INTERVAL=1s here); 30 s is plenty.
			if d.metricsZero() || time.Since(truthSince) > 30*time.Second {
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
