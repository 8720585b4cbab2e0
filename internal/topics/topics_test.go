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

func TestAssessDurability(t *testing.T) {
	for _, tc := range []struct {
		rf, minISR, brokers int
		warn, err           string
	}{
		{1, 1, 1, "", ""},
		{3, 2, 3, "", ""},
		{3, 3, 5, "", ""},
		{1, 1, 3, "replication factor 1 on a cluster of 3 brokers", ""},
		{3, 1, 3, "min.insync.replicas=1 with replication factor 3", ""},
		{2, 1, 2, "set min.insync.replicas=1", ""}, // RF 2: 1 is the default, still weak
		{1, 2, 1, "", "min.insync.replicas=2 is above the replication factor 1"},
		{3, 4, 3, "", "NOT_ENOUGH_REPLICAS"},
	} {
		w, err := assessDurability(tc.rf, tc.minISR, tc.brokers)
		if (tc.warn == "") != (w == "") || !strings.Contains(w, tc.warn) {
			t.Errorf("rf=%d min.insync=%d brokers=%d: warning %q, want %q", tc.rf, tc.minISR, tc.brokers, w, tc.warn)
		}
		if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err) || !errors.Is(err, ErrMisconfigured)) {
			t.Errorf("rf=%d min.insync=%d brokers=%d: err %v, want %q", tc.rf, tc.minISR, tc.brokers, err, tc.err)
		}
	}
	if DefaultMinInsyncReplicas(1) != 1 || DefaultMinInsyncReplicas(2) != 1 || DefaultMinInsyncReplicas(3) != 2 || DefaultMinInsyncReplicas(5) != 4 {
		t.Error("DefaultMinInsyncReplicas is not max(1, rf-1)")
	}
}

func fakeCluster(t *testing.T, brokers int) *kadm.Client {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(brokers))
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

func topicMinInsync(t *testing.T, adm *kadm.Client, topic string) string {
	t.Helper()
	rcs, err := adm.DescribeTopicConfigs(context.Background(), topic)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := rcs.On(topic, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range rc.Configs {
		if c.Key == "min.insync.replicas" && c.Value != nil {
			return *c.Value
		}
	}
	return ""
}

// TestEnsureSetsMinInsyncReplicas: created topics get max(1, RF-1) or the
// configured value, and retention stays infinite.
func TestEnsureSetsMinInsyncReplicas(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	adm := fakeCluster(t, 3)
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, nil))
	for _, tc := range []struct {
		name    string
		rf, min int16
		want    string
	}{
		{"auto.rf3", 3, 0, "2"},
		{"auto.rf2", 2, 0, "1"},
		{"explicit.rf3", 3, 3, "3"},
	} {
		spec := Spec{Name: tc.name, Partitions: 2, ReplicationFactor: tc.rf, MinInsyncReplicas: tc.min, Configs: InfiniteRetention(), Log: log}
		if err := Ensure(ctx, adm, spec); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got := topicMinInsync(t, adm, tc.name); got != tc.want {
			t.Errorf("%s: min.insync.replicas = %q, want %s", tc.name, got, tc.want)
		}
		if len(spec.Configs) != 1 {
			t.Errorf("%s: Ensure changed the caller's Configs: %v", tc.name, spec.Configs)
		}
	}
	// RF 2 → min.insync 1 on a 3-broker cluster: created, with a warning.
	if !strings.Contains(buf.String(), `"topic":"auto.rf2"`) || !strings.Contains(buf.String(), "may be acknowledged by the leader alone") {
		t.Errorf("no durability warning for auto.rf2: %s", buf.String())
	}
	if strings.Contains(buf.String(), `durability: min.insync.replicas=2 with replication factor 3`) {
		t.Errorf("warning for a sound topic: %s", buf.String())
	}
}

// TestEnsureChecksExistingTopics: a topic created elsewhere is judged by
// its real replication factor and min.insync.replicas.
func TestEnsureChecksExistingTopics(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	adm := fakeCluster(t, 3)
	create := func(name string, rf int16, minISR string) {
		t.Helper()
		cfg := map[string]*string{}
		if minISR != "" {
			cfg["min.insync.replicas"] = &minISR
		}
		if _, err := adm.CreateTopic(ctx, 1, rf, cfg, name); err != nil {
			t.Fatal(err)
		}
	}
	create("weak.isr", 3, "1")
	create("single.replica", 1, "")
	create("impossible", 2, "3")
	create("sound", 3, "2")
	for _, tc := range []struct {
		name, warn string
		err        bool
	}{
		{"weak.isr", "may be acknowledged by the leader alone", false},
		{"single.replica", "replication factor 1 on a cluster of 3 brokers", false},
		{"impossible", "", true},
		{"sound", "", false},
	} {
		var buf bytes.Buffer
		spec := Spec{Name: tc.name, Partitions: 1, ReplicationFactor: 3, Log: slog.New(slog.NewJSONHandler(&buf, nil))}
		err := Ensure(ctx, adm, spec)
		if tc.err != errors.Is(err, ErrMisconfigured) {
			t.Errorf("%s: err %v, want ErrMisconfigured=%v", tc.name, err, tc.err)
		}
		if tc.warn == "" && strings.Contains(buf.String(), "durability") || !strings.Contains(buf.String(), tc.warn) {
			t.Errorf("%s: log %s, want warning %q", tc.name, buf.String(), tc.warn)
		}
	}
}

func TestSpecRejectsMinInsyncAboveReplicationFactor(t *testing.T) {
	err := Ensure(context.Background(), nil, Spec{Name: "x", Partitions: 1, ReplicationFactor: 2, MinInsyncReplicas: 3})
	if !errors.Is(err, ErrInvalidSpec) || !strings.Contains(err.Error(), "min.insync.replicas") {
		t.Fatalf("err = %v, want ErrInvalidSpec naming min.insync.replicas", err)
	}
}
