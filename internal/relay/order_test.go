package relay

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"cqrsflow/internal/envelope"
)

// slowLoop is a Producer that, before handing over a later record of a
// key, waits (at most a second) until the promise of the key's first
// record fired: the relay's produce loop descheduled between two rows of
// an aggregate while Kafka answers the first. With records sent as soon
// as they are produced, the first one's refusal is then handled before
// the second is buffered, and the second goes out alone and is written
// (CI saw version 2 of an aggregate on Kafka ahead of version 1 this
// way).
type slowLoop struct {
	Producer
	mu    sync.Mutex
	fired map[string]chan struct{}
}

func (s *slowLoop) Produce(ctx context.Context, r *kgo.Record, promise func(*kgo.Record, error)) {
	s.mu.Lock()
	ch, seen := s.fired[string(r.Key)]
	if !seen {
		ch = make(chan struct{})
		s.fired[string(r.Key)] = ch
	}
	s.mu.Unlock()
	if !seen {
		s.Producer.Produce(ctx, r, func(r *kgo.Record, err error) {
			close(ch)
			promise(r, err)
		})
		return
	}
	select {
	case <-ch:
	case <-time.After(time.Second):
	}
	s.Producer.Produce(ctx, r, promise)
}

// A Kafka refusal of an aggregate's row takes the aggregate's later rows
// of the batch with it, however slowly the batch was produced: nothing of
// the aggregate is written ahead of the refused row.
func TestRefusedRowTakesLaterVersionsWithItWhenProducedSlowly(t *testing.T) {
	topic, c := smallMessageKafka(t)
	prod := &slowLoop{Producer: newProducer(t, c), fired: map[string]chan struct{}{}}
	rows := []row{bigRow(1, "poison", 1), mkRow(2, "poison", 2), mkRow(3, "poison", 3)}
	errs := make([]error, len(rows))
	publish(context.Background(), prod, prefixTopics("p", nil), rows, errs)
	for i, err := range errs {
		if err == nil {
			t.Errorf("row %d (version %d) acked although version 1 was refused", rows[i].ID, rows[i].Version)
		}
	}
	if !errors.Is(errs[0], kerr.MessageTooLarge) {
		t.Errorf("version 1: %v, want MESSAGE_TOO_LARGE", errs[0])
	}
	if got := onKafka(t, c, topic)["poison"]; len(got) != 0 {
		t.Fatalf("versions %v of the aggregate on Kafka, want none ahead of the refused version 1", got)
	}
	if ids := deletable(rows, errs); len(ids) != 0 {
		t.Fatalf("deletable %v", ids)
	}
}

// hugeRow is a row whose record is over the producer's batch limit.
func hugeRow(id int64, agg string, version int64) row {
	r := mkRow(id, agg, version)
	r.Payload = []byte(`{"blob":"` + strings.Repeat("x", producerBatchMaxBytes) + `"}`)
	return r
}

// A record over the producer's batch limit is refused by franz-go alone,
// without failing the records behind it. publish does not hand it over
// and holds its aggregate's later rows, so they cannot get ahead of it;
// the refusal is confirmed by the probe like a refusal by Kafka, and
// after PoisonAttempts the row is dead-lettered as MESSAGE_TOO_LARGE.
func TestOversizedRowHoldsItsAggregateAndIsDeadLettered(t *testing.T) {
	topic := envelope.Topic("p", "order")
	c := fakeKafka(t, 1, topic)
	errs := make([]error, 3)
	rows := []row{hugeRow(1, "huge", 1), mkRow(2, "huge", 2), mkRow(3, "other", 1)}
	publish(context.Background(), newProducer(t, c), prefixTopics("p", nil), rows, errs)
	if !errors.Is(errs[0], kerr.MessageTooLarge) || classify(errs[0]).reason != kerr.MessageTooLarge.Message {
		t.Fatalf("oversized row: %v (%+v), want a MESSAGE_TOO_LARGE refusal", errs[0], classify(errs[0]))
	}
	if !errors.Is(errs[1], errHeld) || errs[2] != nil {
		t.Fatalf("later row of its aggregate: %v (want held); another aggregate's: %v (want acked)", errs[1], errs[2])
	}
	got := onKafka(t, c, topic)
	if len(got["huge"]) != 0 || len(got["other"]) != 1 {
		t.Fatalf("on Kafka: %v, want only the other aggregate's row", got)
	}

	r, probe := poisonRelay(t, c)
	p := &r.poison[0]
	t0 := time.Now()
	for attempt := 1; attempt <= 3; attempt++ {
		rows := []row{hugeRow(1, "huge", 1), mkRow(2, "huge", 2)}
		res := r.publishBatch(context.Background(), 0, p, rows, t0.Add(time.Duration(attempt)*time.Second))
		if res.err != nil || len(res.ids) != 0 {
			t.Fatalf("attempt %d: err %v, deletable %v", attempt, res.err, res.ids)
		}
		if attempt < 3 {
			if s := p.rows[1]; s == nil || s.attempts != attempt || s.reason != kerr.MessageTooLarge.Message {
				t.Fatalf("attempt %d: suspect %+v", attempt, s)
			}
			continue
		}
		if len(res.dead) != 1 || res.dead[0].row.ID != 1 || res.dead[0].reason != kerr.MessageTooLarge.Message {
			t.Fatalf("third attempt: dead %+v, want outbox id 1 as MESSAGE_TOO_LARGE", res.dead)
		}
	}
	if n := probe.n.Load(); n != 3 {
		t.Fatalf("%d probes, want one per attempt", n)
	}
	if got := onKafka(t, c, topic)["huge"]; len(got) != 0 {
		t.Fatalf("versions %v of the oversized row's aggregate on Kafka", got)
	}
}
