package nemesis

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"cqrsflow/chaos/history"
)

// Injector injects one fault. Inject returns once the fault is in force
// and verified (rec.Verified says how); heal ends it and verifies the
// recovery. An injection that cannot be verified is an error: a fault that
// did not happen must not count as survived.
type Injector interface {
	Inject(ctx context.Context, s Step, rec *history.Fault) (heal func(ctx context.Context) error, err error)
}

// Run executes steps from start on: each waits for its planned time and
// for its resource, is injected, held, and healed. When ctx ends, no new
// fault starts and the ones in force are healed at once; Run returns when
// every fault is healed. Every fault is passed to record when healed (or
// when its injection failed).
func Run(ctx context.Context, start time.Time, steps []Step, inj Injector, record func(history.Fault), log *slog.Logger) {
	var (
		mu   sync.Mutex
		busy = map[string]chan struct{}{} // resource → closed when freed
		wg   sync.WaitGroup
	)
	// Heals run on their own context: they must finish (bounded by the
	// injector) even after the fault window closed.
	healCtx := context.WithoutCancel(ctx)
	for i, s := range steps {
		if !sleepUntil(ctx, start.Add(s.At)) {
			break
		}
		for { // wait for the resource
			mu.Lock()
			ch, taken := busy[s.Resource()]
			if !taken {
				busy[s.Resource()] = make(chan struct{})
				mu.Unlock()
				break
			}
			mu.Unlock()
			select {
			case <-ctx.Done():
			case <-ch:
			}
			if ctx.Err() != nil {
				break
			}
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			rec := history.Fault{Record: "fault", Seq: i + 1, Kind: s.Kind, Target: s.Target, Param: s.Param,
				Planned: s.At, Hold: s.Hold, Start: time.Now()}
			defer func() {
				mu.Lock()
				close(busy[s.Resource()])
				delete(busy, s.Resource())
				mu.Unlock()
				record(rec)
			}()
			log.Info("fault", "seq", rec.Seq, "kind", s.Kind, "target", s.Target, "param", s.Param, "hold", s.Hold.String())
			heal, err := inj.Inject(healCtx, s, &rec)
			if err != nil {
				rec.Err = fmt.Sprintf("inject: %v", err)
				log.Warn("fault injection failed", "seq", rec.Seq, "kind", s.Kind, "target", s.Target, "err", err)
			}
			if heal == nil { // an instant fault (poison), or one that changed nothing
				rec.Healed = time.Now()
				return
			}
			t := time.NewTimer(s.Hold)
			select {
			case <-ctx.Done():
			case <-t.C:
			}
			t.Stop()
			if err := heal(healCtx); err != nil {
				rec.Err = joinErr(rec.Err, fmt.Sprintf("heal: %v", err))
				log.Warn("healing failed", "seq", rec.Seq, "kind", s.Kind, "target", s.Target, "err", err)
			}
			rec.Healed = time.Now()
			log.Info("healed", "seq", rec.Seq, "kind", s.Kind, "target", s.Target, "after", rec.Healed.Sub(rec.Start).Round(time.Millisecond).String())
		}()
	}
	wg.Wait()
}

func joinErr(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}

func sleepUntil(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() == nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-timer.C:
		return true
	}
}
