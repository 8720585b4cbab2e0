//go:build integration

package command

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
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

// BenchmarkUpdateProductSideBySide updates a product with 1 event and one
// with 10 000 events (v1 then v2) in turn, one update of each per
// iteration, so both sides meet the same load on a shared machine. It
// reports each side's median latency and mean CPU of this process per
// update (the write side without HTTP), and their ratios.
//
//	go test -tags integration -run '^$' -bench BenchmarkUpdateProductSideBySide -benchtime 2000x ./internal/command/
func BenchmarkUpdateProductSideBySide(b *testing.B) {
	pg := testenv.Postgres(b)
	store := eventstore.New(pg.Pool)
	defer store.Close()
	schemas, err := eventschema.Load()
	if err != nil {
		b.Fatal(err)
	}
	h, err := New(store, schemas, prometheus.NewRegistry())
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	ids := make([]string, 2)
	for k, n := range []int{1, 10000} {
		res, err := h.CreateProduct.Handle(ctx, CreateProduct{Fields: product.Fields{Name: "p", Price: 100, Stock: 1}})
		if err != nil {
			b.Fatal(err)
		}
		ids[k] = res.ID
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
	}
	update := func(id string) (time.Duration, time.Duration) {
		c0, t0 := cpuTime(), time.Now()
		if _, err := h.UpdateProduct.Handle(ctx, UpdateProduct{ID: id, Fields: product.Fields{Name: "q", Price: 200, Stock: 2}}); err != nil {
			b.Fatal(err)
		}
		return time.Since(t0), cpuTime() - c0
	}
	for _, id := range ids {
		update(id) // the first update of the long history writes its snapshot
	}
	var lat [2][]time.Duration
	var cpu [2]time.Duration
	for b.Loop() {
		for k, id := range ids {
			l, c := update(id)
			lat[k] = append(lat[k], l)
			cpu[k] += c
		}
	}
	n := float64(len(lat[0]))
	med := func(d []time.Duration) float64 { slices.Sort(d); return float64(d[len(d)/2]) }
	m1, m2 := med(lat[0]), med(lat[1])
	b.ReportMetric(m1, "lat-1ev-ns")
	b.ReportMetric(m2, "lat-10000ev-ns")
	b.ReportMetric(m2/m1, "lat-ratio")
	b.ReportMetric(float64(cpu[0])/n, "cpu-1ev-ns")
	b.ReportMetric(float64(cpu[1])/n, "cpu-10000ev-ns")
	b.ReportMetric(float64(cpu[1])/float64(cpu[0]), "cpu-ratio")
}
