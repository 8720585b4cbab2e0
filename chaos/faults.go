package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"cqrsflow/chaos/history"
	"cqrsflow/chaos/nemesis"
)

// Inject implements nemesis.Injector: each fault is checked to be in force
// (rec.Verified) before the hold starts.
func (p *pipeline) Inject(ctx context.Context, s nemesis.Step, rec *history.Fault) (func(context.Context) error, error) {
	verified := func(format string, args ...any) { rec.Verified = append(rec.Verified, fmt.Sprintf(format, args...)) }
	switch s.Kind {
	case nemesis.Kill, nemesis.Term:
		return p.stopBinary(ctx, s, verified)
	case nemesis.Pause:
		if b, ok := p.bins[s.Target]; ok {
			b.waitRunning(20 * time.Second)
			v, err := b.pause()
			if err != nil {
				return nil, err
			}
			verified("%s", v)
			return func(context.Context) error {
				v, err := b.resume()
				if err == nil {
					verified("%s", v)
				}
				return err
			}, nil
		}
		return p.pauseService(s.Target, verified)
	case nemesis.PGCrash:
		return p.pgCrash(ctx, verified)
	case nemesis.PGBackendKill:
		return p.pgBackendKill(ctx, s.Target, verified)
	case nemesis.KafkaRestart, nemesis.ESRestart:
		return p.restartService(ctx, s, verified)
	case nemesis.Cut, nemesis.Delay:
		return p.degradeLink(s, verified)
	case nemesis.JoinRelay, nemesis.JoinProjector:
		return p.join(ctx, s, verified)
	case nemesis.Poison:
		keys, err := p.poison(ctx, s, rec.Seq, verified)
		rec.Keys = keys
		return nil, err
	case nemesis.Oversize:
		key, appended, err := p.oversize(ctx, s, rec.Seq, verified)
		if key != "" {
			rec.Keys = []string{key}
		}
		rec.Appended = appended
		return nil, err
	}
	return nil, fmt.Errorf("unknown fault kind %q", s.Kind)
}

// stopBinary kills (SIGKILL) or stops (SIGTERM) a binary; the heal starts
// it again and waits for /healthz.
func (p *pipeline) stopBinary(ctx context.Context, s nemesis.Step, verified func(string, ...any)) (func(context.Context) error, error) {
	b := p.bins[s.Target]
	b.waitRunning(20 * time.Second)
	var (
		v   string
		err error
	)
	if s.Kind == nemesis.Kill {
		v, err = b.kill()
	} else {
		v, err = b.term(termGrace)
	}
	heal := func(ctx context.Context) error { return p.restart(ctx, b, verified) }
	if err != nil {
		if b.pid() == 0 {
			return heal, err // it ended, if not as it should: start it again
		}
		return nil, err
	}
	verified("%s", v)
	return heal, nil
}

// termGrace bounds a binary's exit after SIGTERM: the relay's
// SHUTDOWN_GRACE (15 s) plus its DELIVERY_TIMEOUT (10 s) plus the release
// of its leases and the HTTP server's shutdown (5 s each), with slack.
const termGrace = 45 * time.Second

// restart starts a stopped binary and waits for /healthz. A binary that
// cannot become healthy because another fault holds a dependency down is
// not an error of this fault: the harness checks every binary is ready
// before it drains.
func (p *pipeline) restart(ctx context.Context, b *binary, verified func(string, ...any)) error {
	if err := b.start(); err != nil {
		return err
	}
	if err := b.waitHTTP(ctx, "/healthz", 90*time.Second); err != nil {
		verified("%s restarted (pid %d), /healthz not answering yet: %s", b.name, b.pid(), firstLine(err.Error()))
		return nil
	}
	verified("%s restarted (pid %d), /healthz ok", b.name, b.pid())
	return nil
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}

// degradeLink cuts a component's link to a service or slows it down, and
// proves it with a probe through the proxy.
func (p *pipeline) degradeLink(s nemesis.Step, verified func(string, ...any)) (func(context.Context) error, error) {
	px := p.h.proxies[s.Target]
	if px == nil {
		return nil, fmt.Errorf("no proxy for link %s", s.Target)
	}
	_, svc, _ := strings.Cut(s.Target, "->")
	if s.Kind == nemesis.Cut {
		px.Cut()
		if d, err := probe(px.Addr(), svc, 2*time.Second); err == nil {
			px.Restore()
			return nil, fmt.Errorf("link %s cut, yet a probe through it was answered in %s", s.Target, d)
		}
		verified("%s: connections dropped, a probe through the proxy gets no answer", s.Target)
		return func(context.Context) error {
			px.Restore()
			if d, err := probe(px.Addr(), svc, 5*time.Second); err == nil {
				verified("restored: probe answered in %s", d.Round(time.Millisecond))
			} else {
				verified("restored (probe not answered: %v; %s may be down for another fault)", err, svc)
			}
			return nil
		}, nil
	}
	d, err := time.ParseDuration(s.Param)
	if err != nil {
		return nil, fmt.Errorf("delay %q: %w", s.Param, err)
	}
	px.SetDelay(d)
	// Both directions are delayed: a round trip takes at least 2d.
	if rtt, err := probe(px.Addr(), svc, 2*d+5*time.Second); err != nil {
		verified("%s: delay %s set (probe not answered: %v; %s may be down for another fault)", s.Target, d, err, svc)
	} else if rtt < 2*d {
		px.SetDelay(0)
		return nil, fmt.Errorf("link %s delayed by %s, yet a probe round trip took %s", s.Target, d, rtt)
	} else {
		verified("%s: probe round trip %s with a %s delay each way", s.Target, rtt.Round(time.Millisecond), d)
	}
	return func(context.Context) error {
		px.SetDelay(0)
		verified("delay removed")
		return nil
	}, nil
}

// join starts relay-2 or projector-3 for the hold; it leaves by SIGTERM
// or SIGKILL.
func (p *pipeline) join(ctx context.Context, s nemesis.Step, verified func(string, ...any)) (func(context.Context) error, error) {
	b := p.bins[s.Target]
	b.mu.Lock()
	b.retired = false // it left after an earlier join
	b.mu.Unlock()
	if err := b.start(); err != nil {
		return nil, err
	}
	if err := b.waitHTTP(ctx, "/healthz", 90*time.Second); err != nil {
		// Not this fault's failure: another fault may hold a dependency
		// down; the watchdog reports a process that hangs.
		verified("%s joined (pid %d), /healthz not answering yet: %s", b.name, b.pid(), firstLine(err.Error()))
	} else if err := b.waitHTTP(ctx, "/readyz", 10*time.Second); err != nil {
		verified("%s joined (pid %d), not ready yet: %s", b.name, b.pid(), firstLine(err.Error()))
	} else {
		verified("%s joined (pid %d), ready", b.name, b.pid())
	}
	return func(context.Context) error {
		b.mu.Lock()
		b.retired = true // no restart by the supervisor from here on
		b.mu.Unlock()
		if b.pid() == 0 {
			verified("left: it was not running (between restarts after exiting during start-up)")
			return nil
		}
		var (
			v   string
			err error
		)
		if s.Param == "leave=KILL" {
			v, err = b.kill()
		} else {
			v, err = b.term(termGrace)
		}
		if err == nil {
			verified("left: %s", v)
		}
		return err
	}, nil
}

// poison writes malformed records straight to an event topic: not JSON,
// an envelope without its required fields, an unknown event type, and an
// event that cannot start a document. The projector must send each to the
// dead-letter topic and carry on.
func (p *pipeline) poison(ctx context.Context, s nemesis.Step, seq int, verified func(string, ...any)) ([]string, error) {
	var n int
	if _, err := fmt.Sscanf(s.Param, "records=%d", &n); err != nil || n < 1 {
		return nil, fmt.Errorf("poison %q: want records=N", s.Param)
	}
	topic := p.topic(s.Target)
	cont := map[string]string{"product": "ProductUpdated", "order": "OrderPaid"}[s.Target]
	var (
		keys []string
		recs []*kgo.Record
	)
	for i := range n {
		key := fmt.Sprintf("poison-%s-%d-%d", p.runID, seq, i)
		env := func(typ string) string {
			return fmt.Sprintf(`{"event_id":"%s","event_type":%q,"schema_version":1,"aggregate_type":%q,"aggregate_id":%q,"version":1,`+
				`"occurred_at":"2026-01-01T00:00:00Z","recorded_at":"2026-01-01T00:00:00Z","global_position":1,"payload":{},"metadata":{}}`,
				"00000000-0000-4000-8000-"+fmt.Sprintf("%012d", seq*10+i), typ, s.Target, key)
		}
		value := []string{`{not json`, `{"event_type":"` + cont + `","aggregate_id":"` + key + `"}`, env("Exploded"), env(cont)}[i%4]
		keys = append(keys, key)
		recs = append(recs, &kgo.Record{Topic: topic, Key: []byte(key), Value: []byte(value)})
	}
	res, err := produceRetrying(ctx, p.h.stk.KafkaAddr(), recs, 3*time.Minute)
	if err != nil {
		// Records Kafka did not acknowledge may still have been written:
		// the checker looks for every key in the dead-letter topic.
		return keys, fmt.Errorf("producing poison records: %w", err)
	}
	var at []string
	for _, r := range res {
		at = append(at, fmt.Sprintf("%s:%d@%d", r.Record.Key, r.Record.Partition, r.Record.Offset))
	}
	verified("%d records acknowledged by Kafka in %s: %s", n, topic, strings.Join(at, ", "))
	return keys, nil
}

// produceRetrying produces recs until Kafka acknowledges them all, with a
// fresh client per attempt (the broker may be restarting for another
// fault: a client gives up on a broker that closes connections at once),
// bounded by timeout.
func produceRetrying(ctx context.Context, addr string, recs []*kgo.Record, timeout time.Duration) (kgo.ProduceResults, error) {
	deadline := time.Now().Add(timeout)
	for {
		cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.RecordDeliveryTimeout(30*time.Second))
		if err != nil {
			return nil, err
		}
		pctx, cancel := context.WithTimeout(ctx, 40*time.Second)
		for _, r := range recs {
			r.Partition, r.Offset = 0, 0
		}
		res := cl.ProduceSync(pctx, recs...)
		cancel()
		cl.Close()
		err = res.FirstErr()
		if err == nil || time.Now().After(deadline) || ctx.Err() != nil {
			return res, err
		}
		time.Sleep(2 * time.Second)
	}
}
