package tracing

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

const validParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

func TestEnabled(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		want bool
	}{
		{nil, false},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, true},
		{map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}, true},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "TRUE"}, false},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_TRACES_EXPORTER": "none"}, false},
		{map[string]string{"OTEL_TRACES_EXPORTER": "otlp"}, false},
	} {
		if got := Enabled(func(k string) string { return tc.env[k] }); got != tc.want {
			t.Errorf("Enabled(%v) = %v, want %v", tc.env, got, tc.want)
		}
	}
}

func TestSetupOffWithoutEndpoint(t *testing.T) {
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "")
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "")
	tp, stop, err := Setup(context.Background(), "test")
	if tp != nil || stop != nil || err != nil {
		t.Fatalf("Setup without endpoint = %v, %v, %v; want nil, nil, nil", tp, stop != nil, err)
	}
}

func TestSetupRefusesUnknownProtocol(t *testing.T) {
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1")
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")
	_, _, err := Setup(context.Background(), "test")
	if err == nil || !strings.Contains(err.Error(), "OTEL_EXPORTER_OTLP_PROTOCOL") {
		t.Fatalf("err = %v, want one naming OTEL_EXPORTER_OTLP_PROTOCOL", err)
	}
}

func TestSetupOn(t *testing.T) {
	for _, proto := range []string{"", "grpc"} {
		t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1")
		t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", proto)
		tp, stop, err := Setup(context.Background(), "test")
		if err != nil || tp == nil {
			t.Fatalf("protocol %q: Setup = %v, %v", proto, tp, err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 0)
		_ = stop(ctx) // nothing listens; stopping must not hang
		cancel()
	}
}

// Start, the binaries' entry: off, no provider and a stop that does
// nothing; on, a provider, a log line, and a stop that returns (nothing
// listens on the endpoint); a bad setting, the error.
func TestStart(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "")
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "")
	tp, stop, err := Start(context.Background(), "test", log)
	if tp != nil || stop == nil || err != nil || buf.Len() != 0 {
		t.Fatalf("Start off = %v, stop %v, %v, log %q", tp, stop != nil, err, buf.String())
	}
	stop()
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1")
	tp, stop, err = Start(context.Background(), "test", log)
	if tp == nil || err != nil || !strings.Contains(buf.String(), "tracing on") {
		t.Fatalf("Start on = %v, %v, log %q", tp, err, buf.String())
	}
	stop()
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")
	if _, stop, err = Start(context.Background(), "test", log); err == nil || stop == nil {
		t.Fatalf("Start with a bad protocol: %v (stop %v)", err, stop != nil)
	}
}

// Malformed trace context is ignored, never an error or a panic.
func TestParseMalformed(t *testing.T) {
	for _, s := range []string{
		"garbage",
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",      // no flags
		"00-00000000000000000000000000000000-00f067aa0ba902b7-01",   // zero trace id
		"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",   // zero span id
		"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",   // version ff
		"00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",   // not hex
		"00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01",   // upper case
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x", // version 00 with a tail
		strings.Repeat("0", 10000),
		"\x00\xff",
	} {
		if sc := Parse(s, "a=b"); sc.IsValid() {
			t.Errorf("Parse(%q) is valid: %v", s, sc)
		}
	}
	sc := Parse(validParent, "not a tracestate,,,===")
	if !sc.IsValid() || sc.TraceState().Len() != 0 {
		t.Fatalf("valid traceparent with a malformed tracestate: %v, state %q", sc, sc.TraceState().String())
	}
}

func TestHeadersRoundTrip(t *testing.T) {
	sc := Parse(validParent, "vendor=x")
	hs := Headers(sc)
	if len(hs) != 2 {
		t.Fatalf("headers = %v", hs)
	}
	got := FromHeaders(append([]kgo.RecordHeader{{Key: "event_type", Value: []byte("X")}}, hs...))
	if !got.Equal(sc.WithRemote(true)) {
		t.Fatalf("round trip: %v, want %v", got, sc)
	}
	if Headers(trace.SpanContext{}) != nil {
		t.Fatal("headers of an invalid span context")
	}
	if FromHeaders([]kgo.RecordHeader{{Key: HeaderTraceparent, Value: []byte("junk")}}).IsValid() {
		t.Fatal("junk header gave a valid span context")
	}
}

func TestInject(t *testing.T) {
	if p, s := Inject(context.Background()); p != "" || s != "" {
		t.Fatalf("Inject without span = %q %q", p, s)
	}
	ctx := trace.ContextWithRemoteSpanContext(context.Background(), Parse(validParent, ""))
	if p, _ := Inject(ctx); p != validParent {
		t.Fatalf("Inject = %q, want %q", p, validParent)
	}
}

func TestBatchOptions(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tr := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec)).Tracer("t")
	a1 := Parse(validParent, "")
	a2 := Parse("00-4bf92f3577b34da6a3ce929d0e0e4736-1111111111111111-01", "")
	b := Parse("00-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-2222222222222222-01", "")

	// One trace: child of it, linked to each distinct write (duplicates
	// and invalid contexts skipped).
	ctx, opts := BatchOptions([]trace.SpanContext{a1, {}, a2, a1})
	_, s := tr.Start(ctx, "one", opts...)
	s.End()
	// Several traces: a root of its own, linked to all.
	ctx, opts = BatchOptions([]trace.SpanContext{a1, b})
	_, s = tr.Start(ctx, "many", opts...)
	s.End()
	// None: a plain root without links.
	ctx, opts = BatchOptions(nil)
	_, s = tr.Start(ctx, "none", opts...)
	s.End()

	spans := rec.Ended()
	if len(spans) != 3 {
		t.Fatalf("%d spans", len(spans))
	}
	one, many, none := spans[0], spans[1], spans[2]
	if one.SpanContext().TraceID() != a1.TraceID() || one.Parent().SpanID() != a1.SpanID() || len(one.Links()) != 2 {
		t.Errorf("one trace: trace %s parent %s links %d", one.SpanContext().TraceID(), one.Parent().SpanID(), len(one.Links()))
	}
	if many.SpanContext().TraceID() == a1.TraceID() || many.SpanContext().TraceID() == b.TraceID() || many.Parent().IsValid() || len(many.Links()) != 2 {
		t.Errorf("several traces: trace %s parent %v links %d", many.SpanContext().TraceID(), many.Parent(), len(many.Links()))
	}
	if none.Parent().IsValid() || len(none.Links()) != 0 {
		t.Errorf("no traces: parent %v links %d", none.Parent(), len(none.Links()))
	}
}
