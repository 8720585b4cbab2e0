// Command projector keeps the Elasticsearch read models in sync with the
// event topics, and replays or rebuilds them:
//
//	projector [run] [flags]                       consume (default)
//	projector replay --projection P (--to earliest|latest|<RFC3339> | --offsets t:p=o,…) [--wait 30s]
//	projector rebuild --projection P --version N [--drop-old]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"syscall"
	"time"

	"github.com/elastic/go-elasticsearch/v8"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/errgroup"

	"cqrsflow/internal/config"
	"cqrsflow/internal/envelope"
	"cqrsflow/internal/esindex"
	"cqrsflow/internal/obs"
	"cqrsflow/internal/projection/orders"
	"cqrsflow/internal/projection/products"
	"cqrsflow/internal/projector"
)

func main() {
	if err := run(context.Background(), os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "projector:", err)
		os.Exit(1)
	}
}

var known = map[string]projector.Projection{"products": products.Projection, "orders": orders.Projection}

type cfg struct {
	KafkaBrokers     string
	ElasticsearchURL string
	TopicPrefix      string
	Projections      string
	GroupPrefix      string
	IndexPrefix      string
	MetricsAddr      string
	BatchMaxRecords  int
	FlushInterval    time.Duration
	LagInterval      time.Duration
	SessionTimeout   time.Duration
	MaxParked        int
	LogLevel         string
}

func register(fs *flag.FlagSet, c *cfg, errs *[]error) {
	config.String(fs, &c.KafkaBrokers, "KAFKA_BROKERS", config.DefaultKafkaBrokers, "Kafka bootstrap brokers, comma-separated")
	config.String(fs, &c.ElasticsearchURL, "ELASTICSEARCH_URL", config.DefaultElasticsearchURL, "Elasticsearch URL")
	config.String(fs, &c.TopicPrefix, "TOPIC_PREFIX", envelope.DefaultTopicPrefix, "event topic prefix")
	config.String(fs, &c.Projections, "PROJECTIONS", "products,orders", "projections to run, comma-separated")
	config.String(fs, &c.GroupPrefix, "GROUP_PREFIX", "cqrsflow-projector", "consumer group prefix (<prefix>-<projection>)")
	config.String(fs, &c.IndexPrefix, "INDEX_PREFIX", "", "Elasticsearch index/alias name prefix")
	config.String(fs, &c.MetricsAddr, "METRICS_ADDR", "127.0.0.1:9102", "listen address for /healthz, /readyz, /metrics")
	config.Int(fs, &c.BatchMaxRecords, "BATCH_MAX_RECORDS", projector.DefaultBatchMaxRecords, "max records per batch", errs)
	config.Duration(fs, &c.FlushInterval, "FLUSH_INTERVAL", projector.DefaultFlushInterval, "how long a non-full batch waits for more records", errs)
	config.Duration(fs, &c.LagInterval, "LAG_INTERVAL", projector.DefaultLagInterval, "how often consumer and sync lag are computed", errs)
	config.Duration(fs, &c.SessionTimeout, "SESSION_TIMEOUT", projector.DefaultSessionTimeout, "consumer group session timeout (failover time after a crash)", errs)
	config.Int(fs, &c.MaxParked, "MAX_PARKED_EVENTS", projector.DefaultMaxParked, "events held behind version gaps before fetching pauses", errs)
	config.String(fs, &c.LogLevel, "LOG_LEVEL", "info", "debug|info|warn|error")
}

func (c *cfg) validate() ([]projector.Projection, error) {
	var errs []error
	var projs []projector.Projection
	names := config.SplitList(c.Projections)
	if len(names) == 0 {
		errs = append(errs, errors.New("PROJECTIONS: empty"))
	}
	for _, n := range names {
		p, ok := known[n]
		if !ok {
			errs = append(errs, fmt.Errorf("PROJECTIONS: unknown projection %q (known: products, orders)", n))
			continue
		}
		projs = append(projs, p)
	}
	if len(config.SplitList(c.KafkaBrokers)) == 0 {
		errs = append(errs, errors.New("KAFKA_BROKERS: empty"))
	}
	if c.ElasticsearchURL == "" {
		errs = append(errs, errors.New("ELASTICSEARCH_URL: empty"))
	}
	if c.BatchMaxRecords < 1 || c.BatchMaxRecords > 100000 {
		errs = append(errs, fmt.Errorf("BATCH_MAX_RECORDS: %d not in 1..100000", c.BatchMaxRecords))
	}
	if c.FlushInterval < 0 {
		errs = append(errs, errors.New("FLUSH_INTERVAL: negative"))
	}
	if c.MaxParked < 1 {
		errs = append(errs, fmt.Errorf("MAX_PARKED_EVENTS: %d, want >= 1", c.MaxParked))
	}
	if c.SessionTimeout < 6*time.Second || c.SessionTimeout > 5*time.Minute {
		errs = append(errs, fmt.Errorf("SESSION_TIMEOUT: %s not in 6s..5m (broker group.min/max.session.timeout.ms)", c.SessionTimeout))
	}
	if c.LagInterval <= 0 {
		errs = append(errs, errors.New("LAG_INTERVAL: must be > 0"))
	}
	return projs, errors.Join(errs...)
}

func (c *cfg) runnerConfig(p projector.Projection) projector.Config {
	return projector.Config{
		Brokers:         config.SplitList(c.KafkaBrokers),
		Group:           projector.GroupName(c.GroupPrefix, p.Name(), 0),
		Topic:           envelope.Topic(c.TopicPrefix, p.AggregateType()),
		BatchMaxRecords: c.BatchMaxRecords,
		FlushInterval:   c.FlushInterval,
		LagInterval:     c.LagInterval,
		SessionTimeout:  c.SessionTimeout,
		MaxParked:       c.MaxParked,
	}
}

func run(ctx context.Context, args []string) error {
	cmd := "run"
	if len(args) > 0 && (args[0] == "run" || args[0] == "replay" || args[0] == "rebuild") {
		cmd, args = args[0], args[1:]
	}
	fs := flag.NewFlagSet("projector "+cmd, flag.ContinueOnError)
	var c cfg
	var errs []error
	register(fs, &c, &errs)
	var (
		projName, to, offsets string
		wait                  time.Duration
		version               int
		dropOld               bool
	)
	if cmd != "run" {
		fs.StringVar(&projName, "projection", "", "projection (products|orders)")
	}
	switch cmd {
	case "replay":
		fs.StringVar(&to, "to", "", "earliest | latest | RFC 3339 timestamp")
		fs.StringVar(&offsets, "offsets", "", "explicit offsets topic:partition=offset,…")
		fs.DurationVar(&wait, "wait", 0, "wait up to this long for the group to have no live members")
	case "rebuild":
		fs.IntVar(&version, "version", 0, "new index version N (builds <projection>_vN)")
		fs.BoolVar(&dropOld, "drop-old", false, "delete the previous index after the alias swap")
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	projs, err := c.validate()
	errs = append(errs, err)
	var one projector.Projection
	if cmd != "run" {
		p, ok := known[projName]
		if !ok {
			errs = append(errs, fmt.Errorf("--projection: %q is not products or orders", projName))
		}
		one = p
	}
	if cmd == "replay" && (to == "") == (offsets == "") {
		errs = append(errs, errors.New("replay: give exactly one of --to and --offsets"))
	}
	if cmd == "rebuild" && version < 2 {
		errs = append(errs, errors.New("rebuild: --version must be >= 2 (v1 is created by the live projector)"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("invalid configuration:\n%w", err)
	}

	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := obs.NewLogger(obs.Stderr, c.LogLevel).With("component", "projector")
	log.Info("starting", "command", cmd, "kafka_brokers", c.KafkaBrokers, "elasticsearch_url", config.MaskURL(c.ElasticsearchURL),
		"topic_prefix", c.TopicPrefix, "projections", c.Projections, "group_prefix", c.GroupPrefix, "index_prefix", c.IndexPrefix,
		"metrics_addr", c.MetricsAddr, "batch_max_records", c.BatchMaxRecords, "flush_interval", c.FlushInterval.String())
	es, err := esindex.New(c.ElasticsearchURL)
	if err != nil {
		return err
	}
	switch cmd {
	case "replay":
		return replay(ctx, c, one, to, offsets, wait)
	case "rebuild":
		return rebuild(ctx, c, one, es, version, dropOld, log)
	}
	return consume(ctx, c, projs, es, log)
}

func consume(ctx context.Context, c cfg, projs []projector.Projection, es *elasticsearch.Client, log *slog.Logger) error {
	reg := obs.NewRegistry()
	m := projector.NewMetrics(reg)
	var runners []*projector.Runner
	for _, p := range projs {
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		alias, err := projector.EnsureReadModel(sctx, es, c.IndexPrefix, p)
		cancel()
		if err != nil {
			return fmt.Errorf("preparing the %s read model: %w", p.Name(), err)
		}
		rc := c.runnerConfig(p)
		rc.Index = alias
		r, err := projector.New(rc, p, es, m, log)
		if err != nil {
			return err
		}
		runners = append(runners, r)
	}
	checks := map[string]obs.CheckFunc{
		"elasticsearch": func(ctx context.Context) error { return esindex.Ping(ctx, es) },
		"kafka":         func(ctx context.Context) error { return runners[0].Ping(ctx) },
	}
	h := obs.NewHealth(checks)
	g, gctx := errgroup.WithContext(ctx)
	srvCtx, srvStop := context.WithCancel(context.WithoutCancel(ctx))
	defer srvStop()
	g.Go(func() error { return obs.Serve(srvCtx, c.MetricsAddr, h.Mux(reg), 5*time.Second, log) })
	var rg errgroup.Group
	for _, r := range runners {
		rg.Go(func() error { return r.Run(gctx) })
	}
	g.Go(func() error {
		<-gctx.Done()
		h.SetDraining()
		return nil
	})
	err := rg.Wait()
	srvStop()
	if gerr := g.Wait(); gerr != nil && !errors.Is(gerr, context.Canceled) {
		err = errors.Join(err, gerr)
	}
	return err
}

func kafkaAdmin(c cfg) (*kadm.Client, func(), error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(config.SplitList(c.KafkaBrokers)...))
	if err != nil {
		return nil, nil, fmt.Errorf("kafka client: %w", err)
	}
	return kadm.NewClient(cl), cl.Close, nil
}

func replay(ctx context.Context, c cfg, p projector.Projection, to, offsets string, wait time.Duration) error {
	target := projector.ReplayTarget{To: to}
	if offsets != "" {
		o, err := projector.ParseOffsets(offsets)
		if err != nil {
			return err
		}
		target.Offsets = o
	}
	adm, closeFn, err := kafkaAdmin(c)
	if err != nil {
		return err
	}
	defer closeFn()
	group := projector.GroupName(c.GroupPrefix, p.Name(), 0)
	topic := envelope.Topic(c.TopicPrefix, p.AggregateType())
	offs, err := projector.Replay(ctx, adm, group, topic, target, wait)
	if err != nil {
		return err
	}
	var lines []string
	offs.Each(func(o kadm.Offset) { lines = append(lines, fmt.Sprintf("  %s:%d=%d", o.Topic, o.Partition, o.At)) })
	slices.Sort(lines)
	fmt.Printf("group %s reset:\n", group)
	for _, l := range lines {
		fmt.Println(l)
	}
	return nil
}

func rebuild(ctx context.Context, c cfg, p projector.Projection, es *elasticsearch.Client, version int, dropOld bool, log *slog.Logger) error {
	adm, closeFn, err := kafkaAdmin(c)
	if err != nil {
		return err
	}
	defer closeFn()
	return projector.Rebuild(ctx, projector.RebuildOptions{
		Runner:      c.runnerConfig(p),
		GroupPrefix: c.GroupPrefix,
		IndexPrefix: c.IndexPrefix,
		Version:     version,
		DropOld:     dropOld,
		Progress:    os.Stdout,
	}, p, es, adm, log)
}
