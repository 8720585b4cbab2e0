package projector

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"cqrsflow/internal/tracing"
)

// traceBatch records the span of one handled batch, from start to now:
// linked to the write of every record that carries a trace context
// (the relay's traceparent/tracestate headers), and inside that write's
// trace when the batch carries one trace only (tracing.BatchOptions). A
// record without trace context, or with a malformed one, is simply not
// linked.
func (p *processor) traceBatch(recs []*kgo.Record, start time.Time, err error) {
	scs := make([]trace.SpanContext, len(recs))
	for i, rec := range recs {
		scs[i] = tracing.FromHeaders(rec.Headers)
	}
	ctx, opts := tracing.BatchOptions(scs)
	_, span := p.tracer.Start(ctx, "projector.apply", append(opts, trace.WithTimestamp(start),
		trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(attribute.String("messaging.system", "kafka"), attribute.String("messaging.operation.type", "process"),
			attribute.Int("messaging.batch.message_count", len(recs)), attribute.String("cqrsflow.projection", p.proj.Name())))...)
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, "batch not handled")
	}
	span.End()
}

// observeEndToEnd observes one applied event's end-to-end time, with its
// write's trace id as the exemplar when the record carries a sampled
// trace context: a slow bucket of the histogram then leads to a trace.
// Exemplars are served in OpenMetrics only (obs.Health.Mux).
func observeEndToEnd(h prometheus.Observer, seconds float64, rec *kgo.Record) {
	if rec != nil {
		if sc := tracing.FromHeaders(rec.Headers); sc.IsValid() && sc.IsSampled() {
			if eo, ok := h.(prometheus.ExemplarObserver); ok {
				eo.ObserveWithExemplar(seconds, prometheus.Labels{"trace_id": sc.TraceID().String()})
				return
			}
		}
	}
	h.Observe(seconds)
}
