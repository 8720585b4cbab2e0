package pipeline

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"cqrsflow/bench/internal/procs"
	"cqrsflow/internal/config"
	"cqrsflow/internal/esindex"
	"cqrsflow/internal/testenv"
)

// procMem is the memory of one process at the end of the run.
type procMem struct {
	Name string
	Mem  procs.Mem
	Err  error
}

// memory reads the peak RSS of each started binary (and the bench itself).
func (pl *pipeline) memory() []procMem {
	var out []procMem
	for _, p := range pl.procs {
		m, err := procs.ReadMem(p.Pid())
		out = append(out, procMem{Name: p.Name, Mem: m, Err: err})
	}
	m, err := procs.ReadMem(os.Getpid())
	return append(out, procMem{Name: loadGenerator, Mem: m, Err: err})
}

// cleanup stops the binaries and deletes the schema, topics, consumer
// groups and indices of this run. It runs with its own deadline, so it
// also works after the run's context was cancelled.
func (pl *pipeline) cleanup() error {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var errs []error
	// api first (no new writes), then relay and projectors.
	for i := len(pl.procs) - 1; i >= 0; i-- {
		if err := pl.procs[i].Stop(15 * time.Second); err != nil {
			errs = append(errs, err)
		}
	}
	if pl.pgAdmin != nil {
		pl.pgAdmin.Close(ctx)
	}
	errs = append(errs, pl.deleteKafka(ctx), pl.deleteIndices(ctx))
	if pl.db != nil {
		errs = append(errs, pl.db.Drop(ctx))
	}
	err := errors.Join(errs...)
	if err != nil || pl.cfg.KeepLogs {
		fmt.Printf("pipeline: logs kept in %s\n", pl.workDir)
	} else {
		_ = os.RemoveAll(pl.workDir)
	}
	if err != nil {
		return fmt.Errorf("cleanup: %w", err)
	}
	fmt.Println("pipeline: cleaned up schema, topics, groups and indices")
	return nil
}

// deleteKafka deletes the run's topics (<prefix>.*) and every consumer
// group whose name contains the run id.
func (pl *pipeline) deleteKafka(ctx context.Context) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(config.SplitList(pl.cfg.KafkaBrokers)...))
	if err != nil {
		return fmt.Errorf("kafka client for cleanup: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	return errors.Join(pl.deleteGroups(ctx, adm), pl.deleteTopics(ctx, adm))
}

func (pl *pipeline) deleteGroups(ctx context.Context, adm *kadm.Client) error {
	groups, err := adm.ListGroups(ctx)
	if err != nil {
		return fmt.Errorf("listing groups: %w", err)
	}
	var mine []string
	for _, g := range groups.Groups() {
		if strings.Contains(g, pl.runID) {
			mine = append(mine, g)
		}
	}
	if len(mine) == 0 {
		return nil
	}
	if _, err := adm.DeleteGroups(ctx, mine...); err != nil {
		return fmt.Errorf("deleting groups %v: %w", mine, err)
	}
	return nil
}

func (pl *pipeline) deleteTopics(ctx context.Context, adm *kadm.Client) error {
	topics, err := adm.ListTopics(ctx)
	if err != nil {
		return fmt.Errorf("listing topics: %w", err)
	}
	var mine []string
	for _, t := range topics.Names() {
		if strings.HasPrefix(t, pl.topicPrefix+".") {
			mine = append(mine, t)
		}
	}
	if len(mine) == 0 {
		return nil
	}
	resp, err := adm.DeleteTopics(ctx, mine...)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		return fmt.Errorf("deleting topics %v: %w", mine, err)
	}
	return nil
}

// deleteIndices deletes every index named <index prefix>*.
func (pl *pipeline) deleteIndices(ctx context.Context) error {
	es, err := esindex.New(pl.cfg.ElasticsearchURL)
	if err != nil {
		return err
	}
	return testenv.RemoveIndices(ctx, es, pl.indexPrefix+"*")
}
