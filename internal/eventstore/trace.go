package eventstore

import (
	"context"
	"errors"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// Executor runs one command: *Store and *Batcher.
type Executor interface {
	Execute(ctx context.Context, cmd Command) (Result, error)
}

// Traced returns next with a span per command, a child of the span in
// the command's context: with group commit it covers the wait for a
// batch and that batch's transaction, the time the request spends on its
// append. With tp nil it returns next itself: no tracing work at all.
func Traced(next Executor, tp trace.TracerProvider) Executor {
	if tp == nil {
		return next
	}
	return traced{next: next, tr: tp.Tracer("cqrsflow/eventstore")}
}

type traced struct {
	next Executor
	tr   trace.Tracer
}

func (t traced) Execute(ctx context.Context, cmd Command) (Result, error) {
	ctx, span := t.tr.Start(ctx, "eventstore.append", trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attribute.String("db.system.name", "postgresql"),
			attribute.String("cqrsflow.aggregate_type", cmd.AggregateType),
			attribute.Int64("cqrsflow.expected_version", cmd.ExpectedVersion)))
	defer span.End()
	res, err := t.next.Execute(ctx, cmd)
	if err != nil {
		// A version conflict is an answer (409), not a failure of the
		// append.
		if errors.Is(err, ErrVersionConflict) {
			span.SetAttributes(attribute.Bool("cqrsflow.conflict", true))
			return res, err
		}
		span.RecordError(err)
		span.SetStatus(codes.Error, "append failed")
		return res, err
	}
	span.SetAttributes(attribute.Int64("cqrsflow.version", res.Version), attribute.Int("cqrsflow.events", len(res.Appended)),
		attribute.Bool("cqrsflow.replayed", res.Replayed))
	return res, nil
}
