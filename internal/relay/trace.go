package relay

import (
	"errors"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"cqrsflow/internal/tracing"
)

// tracePublish records the span of one batch's publish, from start to
// the last acknowledgement: linked to the write of every record sent (its
// trace context headers), and inside that write's trace when the batch
// carries one trace only (tracing.BatchOptions). Rows not sent (held,
// envelope not built) are not part of it.
func (r *Relay) tracePublish(recs []*kgo.Record, errs []error, start time.Time) {
	if r.tracer == nil {
		return
	}
	scs := make([]trace.SpanContext, 0, len(recs))
	failed := 0
	for i, rec := range recs {
		if rec == nil {
			continue
		}
		if errs[i] != nil {
			failed++
		}
		scs = append(scs, tracing.FromHeaders(rec.Headers))
	}
	if len(scs) == 0 {
		return
	}
	ctx, opts := tracing.BatchOptions(scs)
	_, span := r.tracer.Start(ctx, "relay.publish", append(opts, trace.WithTimestamp(start),
		trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(attribute.String("messaging.system", "kafka"), attribute.String("messaging.operation.type", "send"),
			attribute.Int("messaging.batch.message_count", len(scs)), attribute.Int("cqrsflow.failed", failed),
			attribute.String("cqrsflow.relay_id", r.cfg.ID)))...)
	if failed > 0 {
		span.SetStatus(codes.Error, "records not acknowledged")
		span.RecordError(firstErr(errs))
	}
	span.End()
}

// firstErr is the first error of errs other than errHeld (rows not sent).
func firstErr(errs []error) error {
	for _, err := range errs {
		if err != nil && !errors.Is(err, errHeld) {
			return err
		}
	}
	return nil
}
