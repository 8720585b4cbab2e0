// Command rawrelay is the floor `bench relay` measures the relay against
// at a steady write rate: the least work an outbox relay that publishes
// every committed row at least once can do per batch, at the relay's
// cadence. It keeps no leases, no low-water mark, no dead letters, no
// metrics and no envelope; it must not be run beside a relay.
//
//	rawrelay -addr 127.0.0.1:PORT -postgres-url URL -brokers 127.0.0.1:9092 -topic-prefix P
//
// Like the relay it listens on outbox.NotifyChannel on a connection of its
// own, and after a notification waits -linger (the relay's WAKE_LINGER)
// before it reads, so that one batch carries that window's writes; with no
// notification it reads every -poll (the relay's POLL_INTERVAL). A batch
// is the two round trips a relay that does not lose rows needs, with one
// produce between them:
//
//  1. read the lowest -batch outbox rows (id, aggregate type and id,
//     payload);
//  2. produce them, key = aggregate id, value = the payload as stored, to
//     <prefix>.<type>.events, and wait for Kafka's acks (acks=all,
//     idempotent, linger 0, as the relay's producer);
//  3. delete them by id.
//
// A full batch is followed by the next one at once. Any error ends the
// command (exit 1): the floor is measured, not operated.
//
// GET /readyz answers 200 once both connections are open and the LISTEN
// is in place; with -pprof, /debug/pprof/ is served beside it. Addresses
// (-addr, the PostgreSQL host, the brokers) must be loopback IPs: the
// benchmarks never send load elsewhere. Exit status: 0 after SIGTERM, 1 a
// failure, 2 a bad command line.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/errgroup"

	"cqrsflow/bench/internal/cli"
	"cqrsflow/bench/internal/loopback"
	"cqrsflow/internal/envelope"
	"cqrsflow/internal/outbox"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

func run(args []string, stderr io.Writer) int {
	return cli.Command("rawrelay", args, stderr, parse, serve)
}

type config struct {
	addr    string
	pg      *pgx.ConnConfig
	brokers []string
	prefix  string
	linger  time.Duration
	poll    time.Duration
	batch   int
	pprof   bool
}

// parse reads the flags; a leftover argument, a missing or non-loopback
// address, an unparsable PostgreSQL URL, or a linger, poll or batch out of
// the relay's own bounds is an error.
func parse(args []string, stderr io.Writer) (config, error) {
	fs := flag.NewFlagSet("rawrelay", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "", "listen address of /readyz, host:port on loopback")
	pgURL := fs.String("postgres-url", "", "PostgreSQL URL of the outbox's database (and schema, by search_path)")
	brokers := fs.String("brokers", "", "Kafka brokers, comma-separated host:port on loopback")
	prefix := fs.String("topic-prefix", "", "topic prefix: records go to <prefix>.<type>.events")
	linger := fs.Duration("linger", 25*time.Millisecond, "wait after a notification before reading (the relay's WAKE_LINGER)")
	poll := fs.Duration("poll", 250*time.Millisecond, "read this often when no notification arrives (the relay's POLL_INTERVAL)")
	batch := fs.Int("batch", 1000, "rows per batch at most (the relay's BATCH_SIZE)")
	pprof := fs.Bool("pprof", false, "also serve /debug/pprof/ on -addr, to profile the floor as the relay's DEBUG_ADDR does")
	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	if fs.NArg() > 0 {
		return config{}, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	cfg := config{addr: *addr, prefix: *prefix, linger: *linger, poll: *poll, batch: *batch, pprof: *pprof}
	if err := loopback.HostPort(cfg.addr); err != nil {
		return config{}, fmt.Errorf("-addr: %w", err)
	}
	if *pgURL == "" {
		return config{}, errors.New("-postgres-url is required")
	}
	pg, err := pgx.ParseConfig(*pgURL)
	if err != nil {
		return config{}, fmt.Errorf("-postgres-url: %w", err)
	}
	if ip := net.ParseIP(pg.Host); ip == nil || !ip.IsLoopback() {
		return config{}, fmt.Errorf("-postgres-url: host %q is not a loopback IP address", pg.Host)
	}
	cfg.pg = pg
	for _, b := range strings.Split(*brokers, ",") {
		if b = strings.TrimSpace(b); b == "" {
			continue
		}
		if err := loopback.HostPort(b); err != nil {
			return config{}, fmt.Errorf("-brokers: %w", err)
		}
		cfg.brokers = append(cfg.brokers, b)
	}
	switch {
	case len(cfg.brokers) == 0:
		return config{}, errors.New("-brokers is required")
	case cfg.prefix == "":
		return config{}, errors.New("-topic-prefix is required")
	case cfg.linger < 0 || cfg.linger > time.Second:
		return config{}, fmt.Errorf("-linger must be in 0..1s, got %s", cfg.linger)
	case cfg.poll <= 0 || cfg.poll > time.Minute:
		return config{}, fmt.Errorf("-poll must be in (0, 1m], got %s", cfg.poll)
	case cfg.batch < 1 || cfg.batch > 100000:
		return config{}, fmt.Errorf("-batch must be in 1..100000, got %d", cfg.batch)
	}
	return cfg, nil
}

// serve opens the connections, answers /readyz and runs the loop until
// ctx ends or something fails.
func serve(ctx context.Context, cfg config) error {
	work, err := pgx.ConnectConfig(ctx, cfg.pg)
	if err != nil {
		return fmt.Errorf("connecting to PostgreSQL: %w", err)
	}
	defer work.Close(context.WithoutCancel(ctx))
	listen, err := pgx.ConnectConfig(ctx, cfg.pg.Copy())
	if err != nil {
		return fmt.Errorf("connecting to PostgreSQL for LISTEN: %w", err)
	}
	defer listen.Close(context.WithoutCancel(ctx))
	if _, err := listen.Exec(ctx, "LISTEN "+outbox.NotifyChannel); err != nil {
		return fmt.Errorf("LISTEN: %w", err)
	}
	kc, err := kgo.NewClient(kgo.SeedBrokers(cfg.brokers...), kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)), kgo.ProducerLinger(0),
		kgo.RecordDeliveryTimeout(30*time.Second))
	if err != nil {
		return fmt.Errorf("kafka client: %w", err)
	}
	defer kc.Close()

	ln, err := net.Listen("tcp", cfg.addr)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) })
	if cfg.pprof {
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}

	g, ctx := errgroup.WithContext(ctx)
	wake := make(chan struct{}, 1)
	g.Go(func() error {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	g.Go(func() error {
		<-ctx.Done()
		return srv.Close()
	})
	g.Go(func() error {
		for {
			if _, err := listen.WaitForNotification(ctx); err != nil {
				return fmt.Errorf("waiting for a notification: %w", err)
			}
			select {
			case wake <- struct{}{}:
			default:
			}
		}
	})
	g.Go(func() error { return loop(ctx, cfg, work, kc, wake) })
	return g.Wait()
}

// loop runs batches after each notification (and its linger) or poll,
// until a batch comes back short of -batch.
func loop(ctx context.Context, cfg config, work *pgx.Conn, kc *kgo.Client, wake <-chan struct{}) error {
	poll := time.NewTimer(cfg.poll)
	defer poll.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-wake:
			if cfg.linger > 0 {
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(cfg.linger):
				}
			}
		case <-poll.C:
		}
		for {
			n, err := batch(ctx, cfg, work, kc)
			if err != nil {
				return err
			}
			if n < cfg.batch {
				break
			}
		}
		poll.Reset(cfg.poll)
	}
}

// batch publishes the lowest outbox rows and deletes them (the number
// published).
func batch(ctx context.Context, cfg config, work *pgx.Conn, kc *kgo.Client) (int, error) {
	rows, err := work.Query(ctx, `SELECT id, aggregate_type, aggregate_id, payload FROM outbox ORDER BY id LIMIT $1`, cfg.batch)
	if err != nil {
		return 0, fmt.Errorf("reading the outbox: %w", err)
	}
	var ids []int64
	var recs []*kgo.Record
	var id int64
	var typ, agg string
	var payload []byte
	_, err = pgx.ForEachRow(rows, []any{&id, &typ, &agg, &payload}, func() error {
		ids = append(ids, id)
		recs = append(recs, &kgo.Record{Topic: envelope.Topic(cfg.prefix, typ), Key: []byte(agg), Value: payload})
		payload = nil // ForEachRow scans into the same variable; each record keeps its own bytes
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("reading the outbox: %w", err)
	}
	if len(recs) == 0 {
		return 0, nil
	}
	if err := kc.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		return 0, fmt.Errorf("producing: %w", err)
	}
	if _, err := work.Exec(ctx, `DELETE FROM outbox WHERE id = ANY($1)`, ids); err != nil {
		return 0, fmt.Errorf("deleting published rows: %w", err)
	}
	return len(recs), nil
}
