package projector

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"cqrsflow/internal/esindex"
	"cqrsflow/internal/obs"
	"cqrsflow/internal/projection/products"
)

const (
	writeTrace  = "4bf92f3577b34da6a3ce929d0e0e4736"
	writeParent = "00-" + writeTrace + "-00f067aa0ba902b7-01"
)

func withHeaders(r *kgo.Record, kv ...string) *kgo.Record {
	for i := 0; i < len(kv); i += 2 {
		r.Headers = append(r.Headers, kgo.RecordHeader{Key: kv[i], Value: []byte(kv[i+1])})
	}
	return r
}

// A batch with one valid trace context and malformed ones: every event
// is applied; the batch span is in the write's trace and linked to it
// only; the end-to-end histogram carries the write's trace id as an
// exemplar, served on /metrics in OpenMetrics.
func TestProcessorTraceAndExemplar(t *testing.T) {
	reg := obs.NewRegistry()
	m := NewMetrics(reg)
	spans := tracetest.NewSpanRecorder()
	p := newProcessor(products.Projection, &memStore{docs: map[string]esindex.Hit{}}, &memDLQ{},
		newQuarantineSet(m.Quarantined.WithLabelValues("products")), newPartitions(m.Parked.WithLabelValues("products")), m,
		slog.New(slog.NewTextHandler(io.Discard, nil)),
		Config{BackoffMin: time.Millisecond, BackoffMax: 5 * time.Millisecond,
			Tracing: sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))})
	batch := []*kgo.Record{
		withHeaders(rec("a", products.Created, 1, pl), "traceparent", writeParent, "tracestate", "v=1"),
		withHeaders(rec("b", products.Created, 1, pl), "traceparent", "garbage"),
		withHeaders(rec("c", products.Created, 1, pl), "traceparent", "00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
		withHeaders(rec("d", products.Created, 1, pl), "traceparent", "\xff\x00", "tracestate", strings.Repeat("=", 5000)),
		withHeaders(rec("e", products.Created, 1, pl), "tracestate", "v=1"),
		// not sampled: linked, but no exemplar
		withHeaders(rec("f", products.Created, 1, pl), "traceparent", "00-"+writeTrace+"-1111111111111111-00"),
	}
	if err := p.handle(context.Background(), batch); err != nil {
		t.Fatal(err)
	}
	if got := count(m, OutcomeApplied); got != 6 {
		t.Fatalf("applied %v, want 6 (malformed trace context must not stop an event)", got)
	}
	ended := spans.Ended()
	if len(ended) != 1 {
		t.Fatalf("%d spans", len(ended))
	}
	s := ended[0]
	if s.Name() != "projector.apply" || s.SpanContext().TraceID().String() != writeTrace || len(s.Links()) != 2 {
		t.Errorf("span %s trace %s links %d", s.Name(), s.SpanContext().TraceID(), len(s.Links()))
	}

	req := httptest.NewRequest("GET", "/metrics", nil)
	req.Header.Set("Accept", "application/openmetrics-text; version=1.0.0")
	w := httptest.NewRecorder()
	obs.NewHealth(nil).Mux(reg).ServeHTTP(w, req)
	if w.Code != http.StatusOK || !strings.HasPrefix(w.Header().Get("Content-Type"), "application/openmetrics-text") {
		t.Fatalf("/metrics: %d %s", w.Code, w.Header().Get("Content-Type"))
	}
	var exemplars int
	for _, line := range strings.Split(w.Body.String(), "\n") {
		if strings.HasPrefix(line, "cqrsflow_projector_end_to_end_seconds_bucket") && strings.Contains(line, "# {") {
			exemplars++
			if !strings.Contains(line, `trace_id="`+writeTrace+`"`) {
				t.Errorf("exemplar of another trace: %s", line)
			}
		}
	}
	if exemplars != 1 {
		t.Errorf("%d exemplars in\n%s", exemplars, w.Body.String())
	}
}

// Without tracing no span is made, and the exemplars still come from the
// records' headers.
func TestProcessorExemplarWithoutTracing(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	p := newProcessor(products.Projection, &memStore{docs: map[string]esindex.Hit{}}, &memDLQ{},
		newQuarantineSet(m.Quarantined.WithLabelValues("products")), newPartitions(m.Parked.WithLabelValues("products")), m,
		slog.New(slog.DiscardHandler), Config{})
	if p.tracer != nil {
		t.Fatal("tracer without Config.Tracing")
	}
	if err := p.handle(context.Background(), []*kgo.Record{withHeaders(rec("a", products.Created, 1, pl), "traceparent", writeParent)}); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, mf := range mfs {
		if mf.GetName() != "cqrsflow_projector_end_to_end_seconds" {
			continue
		}
		for _, b := range mf.GetMetric()[0].GetHistogram().GetBucket() {
			if ex := b.GetExemplar(); ex != nil && ex.GetLabel()[0].GetValue() == writeTrace {
				found = true
			}
		}
	}
	if !found {
		t.Fatal("no exemplar with the write's trace id")
	}
}
