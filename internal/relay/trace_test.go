package relay

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"cqrsflow/internal/envelope"
)

const (
	writeA = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	writeB = "00-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-2222222222222222-01"
)

func traceRow(id int64, agg, meta string) row {
	r := mkRow(id, agg, 1)
	r.Metadata = []byte(meta)
	return r
}

func headerMap(hs []kgo.RecordHeader) map[string]string {
	m := map[string]string{}
	for _, h := range hs {
		m[h.Key] = string(h.Value)
	}
	return m
}

// The stored trace context goes out as headers; malformed trace metadata
// (not a string, not a trace context, zero ids) is left out and fails
// nothing: every row is published and deletable.
func TestRecordTraceHeaders(t *testing.T) {
	for _, tc := range []struct {
		meta, parent, state string
	}{
		{`{"traceparent":"` + writeA + `","tracestate":"v=1"}`, writeA, "v=1"},
		{`{"traceparent":"` + writeA + `","tracestate":"=,=\u0000"}`, writeA, ""},
		{`{"traceparent":"garbage","tracestate":"v=1"}`, "", ""},
		{`{"traceparent":"00-00000000000000000000000000000000-00f067aa0ba902b7-01"}`, "", ""},
		{`{"traceparent":7,"tracestate":[1]}`, "", ""},
		{`{"traceparent":{"a":"b"},"correlation_id":"c1"}`, "", ""},
		{`{"tracestate":"v=1"}`, "", ""},
	} {
		r := traceRow(1, "a", tc.meta)
		rec, err := record("p", &r)
		if err != nil {
			t.Errorf("%s: %v", tc.meta, err)
			continue
		}
		h := headerMap(rec.Headers)
		if h["traceparent"] != tc.parent || h["tracestate"] != tc.state {
			t.Errorf("%s: headers %v, want traceparent %q tracestate %q", tc.meta, h, tc.parent, tc.state)
		}
		if _, ok := h["tracestate"]; ok && tc.state == "" {
			t.Errorf("%s: empty tracestate header sent", tc.meta)
		}
		if _, err := envelope.Decode(rec.Value); err != nil {
			t.Errorf("%s: value: %v", tc.meta, err)
		}
	}
}

// A batch publishes every row whatever its trace metadata, and its span
// links each valid write; with one trace in the batch the span is in it.
func TestPublishSpanLinksWrites(t *testing.T) {
	topic := envelope.Topic("p", "order")
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, topic))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	r, _ := poisonRelay(t, c)
	spans := tracetest.NewSpanRecorder()
	r.tracer = sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans)).Tracer("t")
	p := &r.poison[0]

	one := []row{traceRow(1, "a", `{"traceparent":"`+writeA+`"}`), traceRow(2, "b", `{"traceparent":12}`),
		traceRow(3, "c", `{"traceparent":"junk"}`), traceRow(4, "d", `{}`)}
	res := r.publishBatch(context.Background(), 0, p, one, time.Now())
	if res.err != nil || !slices.Equal(res.ids, []int64{1, 2, 3, 4}) {
		t.Fatalf("batch with malformed trace metadata: ids %v err %v", res.ids, res.err)
	}
	two := []row{traceRow(5, "a", `{"traceparent":"`+writeA+`"}`), traceRow(6, "b", `{"traceparent":"`+writeB+`"}`)}
	if res := r.publishBatch(context.Background(), 0, p, two, time.Now()); res.err != nil || len(res.ids) != 2 {
		t.Fatalf("second batch: %v %v", res.ids, res.err)
	}
	ended := spans.Ended()
	if len(ended) != 2 {
		t.Fatalf("%d spans", len(ended))
	}
	s1, s2 := ended[0], ended[1]
	if s1.Name() != "relay.publish" || s1.SpanContext().TraceID().String() != writeA[3:35] || len(s1.Links()) != 1 {
		t.Errorf("one-trace batch: %s trace %s links %d", s1.Name(), s1.SpanContext().TraceID(), len(s1.Links()))
	}
	if s2.Parent().IsValid() || len(s2.Links()) != 2 {
		t.Errorf("two-trace batch: parent %v links %d", s2.Parent(), len(s2.Links()))
	}
}
