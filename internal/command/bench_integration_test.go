//go:build integration

package command

import (
	"context"
	"encoding/json"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"cqrsflow/internal/domain/product"
	"cqrsflow/internal/eventschema"
	"cqrsflow/internal/eventstore"
	"cqrsflow/internal/testenv"
)

// fullHistory is the store without snapshots: it drops DecideFrom, so the
// command folds the whole history (the cost snapshots remove).
type fullHistory struct{ *eventstore.Store }

func (f fullHistory) Execute(ctx context.Context, cmd eventstore.Command) (eventstore.Result, error) {
	cmd.DecideFrom, cmd.StateVersion = nil, 0
	return f.Store.Execute(ctx, cmd)
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkUpdateProductHistory measures one product update through the command
// handler and the event store (what the api does per PUT, without HTTP)
// on a product with 1 and with 10 000 events (v1, as the api wrote them
// before v2, then v2), with snapshots and, for comparison, folding the
// whole history. cpu-ns/op is this process's CPU (user + system) per
// update: PostgreSQL's own work is not in it, but is in ns/op.
//
//	go test -tags integration -run '^$' -bench BenchmarkUpdateProductHistory -benchtime 400x ./internal/command/
func BenchmarkUpdateProductHistory(b *testing.B) {
	pg := testenv.Postgres(b)
	store := eventstore.New(pg.Pool)
	defer store.Close()
	schemas, err := eventschema.Load()
	if err != nil {
		b.Fatal(err)
	}
	for _, side := range []struct {
		name string
		repo Repository
	}{{"snapshots", store}, {"full-history", fullHistory{store}}} {
		h, err := New(side.repo, schemas, prometheus.NewRegistry())
		if err != nil {
			b.Fatal(err)
		}
		for _, n := range []int{1, 10000} {
			b.Run(fmt.Sprintf("%s/events=%d", side.name, n), func(b *testing.B) {
				ctx := context.Background()
				res, err := h.CreateProduct.Handle(ctx, CreateProduct{Fields: product.Fields{Name: "p", Price: 100, Stock: 1}})
				if err != nil {
					b.Fatal(err)
				}
				if n > 1 {
					cmd := eventstore.Command{AggregateType: "product", AggregateID: res.ID, ExpectedVersion: 1}
					for i := range n - 1 {
						cmd.Events = append(cmd.Events, eventstore.NewEvent{Type: "ProductUpdated", SchemaVersion: 1,
							Payload: json.RawMessage(fmt.Sprintf(`{"name":"p%d","description":"","price":%d,"stock":%d}`, i, i%100, i))})
					}
					if _, err := store.Execute(ctx, cmd); err != nil {
						b.Fatal(err)
					}
				}
				upd := UpdateProduct{ID: res.ID, Fields: product.Fields{Name: "q", Price: 200, Stock: 2}}
				if _, err := h.UpdateProduct.Handle(ctx, upd); err != nil { // writes the snapshot
					b.Fatal(err)
				}
				b.ReportAllocs()
				cpu0 := cpuTime()
				ops := 0
				for b.Loop() {
					if _, err := h.UpdateProduct.Handle(ctx, upd); err != nil {
						b.Fatal(err)
					}
					ops++
				}
				b.ReportMetric(float64(cpuTime()-cpu0)/float64(ops), "cpu-ns/op")
			})
		}
	}
}
