package eventstore

import (
	"context"
	"errors"
	"testing"

	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

type execFunc func(ctx context.Context, cmd Command) (Result, error)

func (f execFunc) Execute(ctx context.Context, cmd Command) (Result, error) { return f(ctx, cmd) }

// Without a provider Traced is the executor itself; with one, each command
// gets a span: a conflict is an answer (no error status), any other error
// is the append's failure.
func TestTraced(t *testing.T) {
	var next execFunc = func(context.Context, Command) (Result, error) { return Result{}, nil }
	if _, ok := Traced(next, nil).(execFunc); !ok {
		t.Fatal("Traced(nil provider) wrapped the executor")
	}
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	outcomes := []error{nil, &ConflictError{AggregateType: "order", AggregateID: "a", Expected: 2, Current: 3}, errors.New("connection refused")}
	for _, want := range outcomes {
		ex := Traced(execFunc(func(context.Context, Command) (Result, error) { return Result{Version: 1}, want }), tp)
		if _, err := ex.Execute(context.Background(), Command{AggregateType: "order", AggregateID: "a"}); !errors.Is(err, want) {
			t.Fatalf("error %v, want %v", err, want)
		}
	}
	spans := rec.Ended()
	if len(spans) != 3 {
		t.Fatalf("%d spans", len(spans))
	}
	for i, wantCode := range []codes.Code{codes.Unset, codes.Unset, codes.Error} {
		if spans[i].Name() != "eventstore.append" || spans[i].Status().Code != wantCode {
			t.Errorf("span %d: %s status %v, want %v", i, spans[i].Name(), spans[i].Status().Code, wantCode)
		}
	}
}
