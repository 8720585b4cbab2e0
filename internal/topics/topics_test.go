package topics

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

func fakeAdmin(t *testing.T) *kadm.Client {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return kadm.NewClient(cl)
}

func TestEventSpecs(t *testing.T) {
	specs := EventSpecs("p", []string{"product", "order"}, 12, 1, nil)
	var names []string
	for _, s := range specs {
		names = append(names, s.Name)
		if s.Partitions != 12 || s.ReplicationFactor != 1 || *s.Configs["retention.ms"] != "-1" {
			t.Errorf("spec %s: %+v", s.Name, s)
		}
	}
	want := "p.product.events p.product.events.dlq p.order.events p.order.events.dlq"
	if got := strings.Join(names, " "); got != want {
		t.Fatalf("names = %q, want %q", got, want)
	}
}

func TestEnsureCreatesThenVerifies(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	adm := fakeAdmin(t)
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, nil))
	spec := Spec{Name: "x.product.events", Partitions: 3, ReplicationFactor: 1, Configs: InfiniteRetention(), Log: log}
	if err := Ensure(ctx, adm, spec); err != nil {
		t.Fatalf("create: %v", err)
	}
	td, err := adm.ListTopics(ctx, spec.Name)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(td[spec.Name].Partitions); n != 3 {
		t.Fatalf("partitions = %d, want 3", n)
	}
	// Second call: exists with the same count → no warning.
	buf.Reset()
	if err := Ensure(ctx, adm, spec); err != nil {
		t.Fatalf("verify: %v", err)
	}
	if strings.Contains(buf.String(), "different partition count") {
		t.Fatalf("unexpected warning: %s", buf.String())
	}
	// Different count → warning, no error.
	spec.Partitions = 5
	if err := Ensure(ctx, adm, spec); err != nil {
		t.Fatalf("verify with other count: %v", err)
	}
	if !strings.Contains(buf.String(), "different partition count") {
		t.Fatalf("missing warning, log: %s", buf.String())
	}
}

func TestEnsureRejectsInvalidSpec(t *testing.T) {
	err := Ensure(context.Background(), nil, Spec{Name: "", Partitions: 0, ReplicationFactor: 0})
	if !errors.Is(err, ErrInvalidSpec) {
		t.Fatalf("err = %v, want ErrInvalidSpec", err)
	}
	for _, want := range []string{"name is empty", "partitions", "replication factor"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}
