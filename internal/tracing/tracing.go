// Package tracing sets up OpenTelemetry tracing for a cqrsflow process and
// holds the few helpers the api, the relay and the projector share: W3C
// trace context in and out of strings and Kafka headers, and the span of
// a batch that serves many traces.
//
// Tracing is off unless OTEL_EXPORTER_OTLP_ENDPOINT (or
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) is set. Off means Setup returns a
// nil trace.TracerProvider, and every component checks for nil before it
// does any tracing work, so a process without tracing pays nothing per
// request or record (not even a no-op span). Everything else — sampler,
// batching, headers, TLS, timeouts, resource attributes — is the SDK's
// own handling of the standard OTEL_* variables (docs/operations.md).
package tracing

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// Propagator is the one wire format of trace context everywhere: W3C
// traceparent and tracestate, in HTTP headers, event metadata and Kafka
// headers.
var Propagator = propagation.TraceContext{}

// Header names of the W3C trace context.
const (
	HeaderTraceparent = "traceparent"
	HeaderTracestate  = "tracestate"
)

// Enabled reports whether the environment asks for tracing: an OTLP
// endpoint is set, the SDK is not disabled (OTEL_SDK_DISABLED=true) and
// the traces exporter is not "none".
func Enabled(getenv func(string) string) bool {
	if strings.EqualFold(getenv("OTEL_SDK_DISABLED"), "true") || strings.EqualFold(getenv("OTEL_TRACES_EXPORTER"), "none") {
		return false
	}
	return getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != ""
}

// Setup returns the tracer provider of a process named service (the
// default service.name; OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES
// override it) and the function that flushes and stops it. Both are nil
// when tracing is off (Enabled). The exporter speaks OTLP over HTTP
// (protobuf, the default) or gRPC, as OTEL_EXPORTER_OTLP_TRACES_PROTOCOL
// or OTEL_EXPORTER_OTLP_PROTOCOL say; any other protocol is an error
// naming the variable.
func Setup(ctx context.Context, service string) (trace.TracerProvider, func(context.Context) error, error) {
	if !Enabled(os.Getenv) {
		return nil, nil, nil
	}
	exp, err := exporter(ctx)
	if err != nil {
		return nil, nil, err
	}
	// Later detectors override earlier ones: the environment wins over
	// the binary's default name.
	res, err := resource.New(ctx,
		resource.WithAttributes(attribute.String("service.name", service)),
		resource.WithTelemetrySDK(),
		resource.WithFromEnv(),
	)
	if err != nil && !errors.Is(err, resource.ErrPartialResource) {
		return nil, nil, fmt.Errorf("tracing: OTEL_RESOURCE_ATTRIBUTES: %w", err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	return tp, tp.Shutdown, nil
}

func exporter(ctx context.Context) (sdktrace.SpanExporter, error) {
	name, proto := "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", os.Getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
	if proto == "" {
		name, proto = "OTEL_EXPORTER_OTLP_PROTOCOL", os.Getenv("OTEL_EXPORTER_OTLP_PROTOCOL")
	}
	switch proto {
	case "", "http/protobuf":
		e, err := otlptracehttp.New(ctx)
		if err != nil {
			return nil, fmt.Errorf("tracing: OTLP/HTTP exporter: %w", err)
		}
		return e, nil
	case "grpc":
		e, err := otlptracegrpc.New(ctx)
		if err != nil {
			return nil, fmt.Errorf("tracing: OTLP/gRPC exporter: %w", err)
		}
		return e, nil
	}
	return nil, fmt.Errorf("tracing: %s: %q not supported (http/protobuf or grpc)", name, proto)
}

// Tracer returns tp's tracer for a component, nil when tp is nil.
func Tracer(tp trace.TracerProvider, component string) trace.Tracer {
	if tp == nil {
		return nil
	}
	return tp.Tracer("cqrsflow/" + component)
}

// Inject returns the W3C trace context of the span in ctx; empty strings
// when ctx holds no valid span context.
func Inject(ctx context.Context) (traceparent, tracestate string) {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return "", ""
	}
	c := propagation.MapCarrier{}
	Propagator.Inject(ctx, c)
	return c[HeaderTraceparent], c[HeaderTracestate]
}

// Parse reads a W3C trace context. Anything malformed — a wrong length,
// version ff, all-zero ids, non-hex digits — gives an invalid
// SpanContext (and a malformed tracestate alone is dropped): trace
// context is advisory, never a reason to refuse a request or an event.
func Parse(traceparent, tracestate string) trace.SpanContext {
	if traceparent == "" {
		return trace.SpanContext{}
	}
	c := propagation.MapCarrier{HeaderTraceparent: traceparent}
	if tracestate != "" {
		c[HeaderTracestate] = tracestate
	}
	return trace.SpanContextFromContext(Propagator.Extract(context.Background(), c))
}

// Format writes sc as W3C traceparent and tracestate (empty when sc is
// not valid).
func Format(sc trace.SpanContext) (traceparent, tracestate string) {
	return Inject(trace.ContextWithSpanContext(context.Background(), sc))
}

// Start is Setup for a binary: when tracing is on it logs so, and the
// returned stop flushes and stops the exporter (Stop); when off, tp is
// nil and stop does nothing. Call stop at shutdown either way.
func Start(ctx context.Context, service string, log *slog.Logger) (tp trace.TracerProvider, stop func(), err error) {
	tp, shutdown, err := Setup(ctx, service)
	if err != nil || tp == nil {
		return nil, func() {}, err
	}
	log.Info("tracing on: exporting spans over OTLP")
	return tp, func() { Stop(shutdown, log) }, nil
}

// Stop flushes the spans still buffered and stops the exporter, within
// ten seconds: a collector that is down must not hold up a shutdown.
func Stop(stop func(context.Context) error, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := stop(ctx); err != nil {
		log.Warn("flushing spans at shutdown", "err", err)
	}
}
