package pipeline

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/jackc/pgx/v5"

	"cqrsflow/bench/internal/procs"
	"cqrsflow/internal/config"
	"cqrsflow/internal/testenv"
	"cqrsflow/internal/testenv/binary"
)

// setup builds the binaries, creates and migrates the schema and starts
// relay, projectors and api, each waited for on /readyz.
func (pl *pipeline) setup(ctx context.Context) error {
	bin := pl.cfg.BinDir
	if bin == "" {
		bin = filepath.Join(pl.workDir, "bin")
		fmt.Println("pipeline: building api, outbox-relay, projector")
		if err := binary.Build(ctx, pl.cfg.RepoDir, bin, "cqrsflow/api", "cqrsflow/outbox-relay", "cqrsflow/projector"); err != nil {
			return fmt.Errorf("building the binaries (run from inside the repository): %w", err)
		}
	}
	if err := pl.createSchema(ctx); err != nil {
		return err
	}
	// The relay creates the topics, the projectors the indices and alias.
	relay, err := pl.start(ctx, bin, "outbox-relay", "outbox-relay", "METRICS_ADDR")
	if err != nil {
		return err
	}
	var projectors []*binary.Process
	for i := 1; i <= pl.cfg.Projectors; i++ {
		p, err := pl.start(ctx, bin, fmt.Sprintf("projector-%d", i), "projector", "METRICS_ADDR")
		if err != nil {
			return err
		}
		projectors = append(projectors, p)
	}
	pl.stages = []stageMetric{
		{Label: "relay commit→Kafka ack", Metric: "cqrsflow_relay_publish_lag_seconds", Procs: []*binary.Process{relay}},
		{Label: "projector commit→indexed", Metric: "cqrsflow_projector_end_to_end_seconds",
			LabelName: "projection", LabelValue: "products", Procs: projectors},
	}
	// The per-key rate limiter is off: the part measures the pipeline's
	// capacity, not the limiter's setting.
	pl.api, err = pl.start(ctx, bin, "api", "api", "HTTP_ADDR", "API_KEYS="+pl.apiKey, "RATE_LIMIT_RPS=0")
	return err
}

// start starts one binary of the run on a free port (addrEnv names the
// variable it listens on) and waits until it is ready.
func (pl *pipeline) start(ctx context.Context, bin, name, binName, addrEnv string, extra ...string) (*binary.Process, error) {
	addr, err := testenv.LoopbackAddr()
	if err != nil {
		return nil, err
	}
	// application_name tells the PostgreSQL backends of each process apart.
	pgURL, err := testenv.WithParam(pl.pgURL, "application_name", pl.appName(name))
	if err != nil {
		return nil, err
	}
	env := []string{
		"POSTGRES_URL=" + pgURL,
		"KAFKA_BROKERS=" + pl.cfg.KafkaBrokers,
		"ELASTICSEARCH_URL=" + pl.cfg.ElasticsearchURL,
		"TOPIC_PREFIX=" + pl.topicPrefix,
		"INDEX_PREFIX=" + pl.indexPrefix,
		"GROUP_PREFIX=" + pl.topicPrefix + "-projector",
		addrEnv + "=" + addr,
	}
	env = append(append(env, extra...), pl.cfg.ExtraEnv...)
	p, err := binary.Start(binary.Spec{Name: name, Bin: filepath.Join(bin, binName), Env: slices.Clip(env), Addr: addr,
		LogPath: filepath.Join(pl.workDir, name+".log")})
	if err != nil {
		return nil, err
	}
	pl.procs = append(pl.procs, p)
	if err := p.WaitReady(ctx, pl.cfg.ReadyTimeout); err != nil {
		return nil, err
	}
	fmt.Printf("pipeline: %s ready on %s (pid %d)\n", name, addr, p.Pid())
	return p, nil
}

// createSchema creates and migrates the run's schema and keeps a
// connection for pg_stat_activity (closed by cleanup).
func (pl *pipeline) createSchema(ctx context.Context) error {
	db, err := testenv.CreateSchema(ctx, pl.cfg.PostgresURL, pl.schema)
	if err != nil {
		return err
	}
	pl.db, pl.pgURL = db, db.URL
	if err := db.Migrate(ctx); err != nil {
		return err
	}
	if pl.pgAdmin, err = pgx.Connect(ctx, pl.cfg.PostgresURL); err != nil {
		return fmt.Errorf("connecting to PostgreSQL at %s: %w", config.MaskURL(pl.cfg.PostgresURL), err)
	}
	return nil
}

// cpuGroups are the processes whose CPU the steps account.
func (pl *pipeline) cpuGroups() []procs.Group {
	var g []procs.Group
	for _, p := range pl.procs {
		g = append(g, procs.Group{Name: p.Name, Pid: p.Pid()})
	}
	g = append(g, procs.StackGroups(pl.cfg.StateDir)...)
	return append(g, procs.Group{Name: loadGenerator, Pid: os.Getpid()})
}

// loadGenerator names the bench process in the CPU and memory tables: it
// sends the writes and polls Elasticsearch for the probes, so its CPU is
// the clients', not the pipeline's (pipelineCores leaves it out).
const loadGenerator = "bench (load generator)"

// pipelineCores is the CPU of the pipeline and its stack in one rate's
// cores: every group but the load generator and the machine's other
// processes.
func pipelineCores(cores map[string]float64) float64 {
	var total float64
	for n, c := range cores {
		if n != procs.OtherCPU && n != loadGenerator {
			total += c
		}
	}
	return total
}
