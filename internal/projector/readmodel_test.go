package projector

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// A rebuild's catch-up under a steady write load: the lag is never 0
// when sampled, but the wait ends once the group consumed the topic as it
// was when the wait began; it does not end before.
func TestCatchUpEndsAtTheTopicAsItWas(t *testing.T) {
	const topic, group = "cqrsflow.product.events", "g"
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, topic))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.DefaultProduceTopic(topic))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	produce := func(n int) {
		for range n {
			if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte("x")}).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
	}
	commit := func(at int64) {
		offs := kadm.Offsets{}
		offs.Add(kadm.Offset{Topic: topic, Partition: 0, At: at, LeaderEpoch: -1})
		if err := adm.CommitAllOffsets(ctx, group, offs); err != nil {
			t.Fatal(err)
		}
	}
	produce(10)
	commit(3)
	polls := 0
	var firstEnd int64
	w := catchUp{adm: adm, group: group, topic: topic, done: make(chan error), interval: 10 * time.Millisecond,
		log: slog.New(slog.DiscardHandler), progress: func(_ string, _, end, _ int64) {
			polls++
			switch polls {
			case 1:
				firstEnd = end
			case 3: // the group reaches the end of the first poll while writes go on
				commit(firstEnd - 1)
			case 4:
				commit(firstEnd)
			}
			produce(1) // the lag is never 0
		}}
	// Not caught up: the wait goes on until ctx ends.
	short, stop := context.WithTimeout(ctx, 60*time.Millisecond)
	defer stop()
	w2 := w
	w2.progress = func(string, int64, int64, int64) { produce(1) }
	if err := w2.wait(short, "catch-up"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("wait with the group behind: %v, want the deadline", err)
	}
	commit(3)
	if err := w.wait(ctx, "catch-up"); err != nil {
		t.Fatalf("wait: %v", err)
	}
	if polls < 4 {
		t.Fatalf("the wait ended after %d polls, before the group reached the end of its first", polls)
	}
}
