package relay

import (
	"context"
	"fmt"
	"os"
	"runtime/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"cqrsflow/internal/envelope"
	"cqrsflow/internal/testenv"
)

// drainResult is the drain phase: the relay's rate and, on the same
// records, the raw producer's.
type drainResult struct {
	Rows    int
	Relay   time.Duration // relay: first claim → outbox empty
	Raw     time.Duration // fastest raw run: first produce → last ack
	RawRuns []string
	Records []*kgo.Record // what the relay published, for the raw producer
}

func (d drainResult) relayRate() float64 { return float64(d.Rows) / d.Relay.Seconds() }
func (d drainResult) rawRate() float64   { return float64(d.Rows) / d.Raw.Seconds() }
func (d drainResult) ratio() float64     { return d.relayRate() / d.rawRate() }

func (d drainResult) print() {
	fmt.Printf("  raw franz-go producer, same %d records and settings, 3 runs %v: fastest %s, %.0f events/s\n", len(d.Records), d.RawRuns, d.Raw.Round(time.Millisecond), d.rawRate())
	fmt.Printf("  ratio relay/raw = %.2f (target >= 0.5)\n", d.ratio())
}

// drain prefills the outbox, times an in-process relay until it is empty
// and reads the published records back.
func (b *bench) drain(ctx context.Context) (drainResult, error) {
	d := drainResult{Rows: b.s.Rows}
	fmt.Printf("relay bench: prefilling %d outbox rows (~%d B payloads) in schema %s\n", b.s.Rows, b.s.PayloadBytes, b.schema.Name)
	t0 := time.Now()
	if err := prefillOutbox(ctx, b.pool, b.s.Rows, b.s.PayloadBytes); err != nil {
		return d, err
	}
	fmt.Printf("  prefill took %s\n", time.Since(t0).Round(time.Millisecond))

	var acked atomic.Int64
	stop, err := b.startRelay(ctx, relayRun{id: "bench-relay", onAck: func(_, _ time.Time) { acked.Add(1) }})
	if err != nil {
		return d, err
	}
	stopProfile, err := startProfile(b.s.CPUProfile)
	if err != nil {
		stop()
		return d, err
	}
	// The bound only catches a relay that stopped publishing: the local
	// stack drains the full run's rows in seconds.
	t0 = time.Now()
	err = testenv.Until(ctx, 10*time.Minute, 5*time.Millisecond, "the relay to drain the outbox", func() (bool, error) {
		if acked.Load() < int64(b.s.Rows) {
			return false, nil
		}
		var left bool
		if err := b.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM outbox)`).Scan(&left); err != nil {
			return false, testenv.Permanent(err)
		}
		return !left, nil
	})
	d.Relay = time.Since(t0)
	stopProfile()
	stop()
	if err != nil {
		return d, err
	}
	fmt.Printf("  relay drained %d rows in %s: %.0f events/s (batch %d, %d workers)\n", d.Rows, d.Relay.Round(time.Millisecond),
		d.relayRate(), b.s.BatchSize, b.s.Workers)
	d.Records, err = readBack(ctx, b.s.Brokers, b.relayPrefix, b.s.Rows)
	return d, err
}

// startProfile starts a CPU profile into path (none if empty); the
// returned func stops it.
func startProfile(path string) (func(), error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

// rawBaseline publishes recs to the raw topics with the relay's producer
// settings. The raw rate swings by 2x from run to run on a busy 2-core
// machine (broker GC, log rolls): three runs, each with a new client like
// the relay's, and the fastest is the baseline (the conservative choice
// for the ratio, as for the projector's raw loader).
func (b *bench) rawBaseline(ctx context.Context, recs []*kgo.Record) (fastest time.Duration, runs []string, err error) {
	for _, r := range recs {
		r.Topic = strings.Replace(r.Topic, b.relayPrefix, b.rawPrefix, 1)
	}
	for range 3 {
		d, err := rawProduce(ctx, b.s.Brokers, recs)
		if err != nil {
			return 0, nil, err
		}
		runs = append(runs, d.Round(time.Millisecond).String())
		if fastest == 0 || d < fastest {
			fastest = d
		}
	}
	return fastest, runs, nil
}

// rawProduce publishes recs with a new client and the relay's producer
// settings (rawOpts) and returns the time until the last acknowledgement.
func rawProduce(ctx context.Context, brokers []string, recs []*kgo.Record) (time.Duration, error) {
	raw, err := kgo.NewClient(rawOpts(brokers)...)
	if err != nil {
		return 0, err
	}
	defer raw.Close()
	var wg sync.WaitGroup
	var rawErr atomic.Value
	t0 := time.Now()
	for _, r := range recs {
		wg.Add(1)
		raw.Produce(ctx, r, func(_ *kgo.Record, err error) {
			if err != nil {
				rawErr.Store(err)
			}
			wg.Done()
		})
	}
	wg.Wait()
	d := time.Since(t0)
	if e, ok := rawErr.Load().(error); ok {
		return 0, fmt.Errorf("raw producer: %w", e)
	}
	return d, nil
}

// readBack consumes the n records the relay published under prefix.
func readBack(ctx context.Context, brokers []string, prefix string, n int) ([]*kgo.Record, error) {
	var names []string
	for _, t := range aggTypes {
		names = append(names, envelope.Topic(prefix, t))
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(names...),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxBytes(64<<20))
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	rctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	out := make([]*kgo.Record, 0, n)
	seen := make(map[string]bool, n)
	for len(seen) < n {
		fs := cl.PollFetches(rctx)
		if rctx.Err() != nil {
			return nil, fmt.Errorf("reading back the relay's records: %d of %d: %w", len(seen), n, rctx.Err())
		}
		fs.EachRecord(func(r *kgo.Record) {
			for _, h := range r.Headers {
				if h.Key == envelope.HeaderEventID && !seen[string(h.Value)] {
					seen[string(h.Value)] = true
					out = append(out, &kgo.Record{Topic: r.Topic, Key: r.Key, Value: r.Value, Headers: r.Headers})
				}
			}
		})
	}
	return out, nil
}
