package tracing

import (
	"context"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/trace"
)

// FromHeaders reads the trace context of a Kafka record's headers
// (traceparent, tracestate); an invalid SpanContext when there is none
// or it is malformed.
func FromHeaders(hs []kgo.RecordHeader) trace.SpanContext {
	var parent, state string
	for _, h := range hs {
		switch h.Key {
		case HeaderTraceparent:
			parent = string(h.Value)
		case HeaderTracestate:
			state = string(h.Value)
		}
	}
	return Parse(parent, state)
}

// Headers returns the Kafka headers carrying sc; none when sc is not
// valid.
func Headers(sc trace.SpanContext) []kgo.RecordHeader {
	parent, state := Format(sc)
	if parent == "" {
		return nil
	}
	hs := []kgo.RecordHeader{{Key: HeaderTraceparent, Value: []byte(parent)}}
	if state != "" {
		hs = append(hs, kgo.RecordHeader{Key: HeaderTracestate, Value: []byte(state)})
	}
	return hs
}

// BatchOptions are the start options of the span of a batch whose items
// carry the trace contexts scs (invalid ones are skipped): a link to each
// distinct one, so every write's trace leads to the batch that carried
// it. When every item belongs to one trace, the span is also a child of
// the first of them, so it shows inside that trace; a batch of several
// traces starts a trace of its own (a span has one parent). The SDK keeps
// at most OTEL_SPAN_LINK_COUNT_LIMIT links (128 by default).
func BatchOptions(scs []trace.SpanContext) (parent context.Context, opts []trace.SpanStartOption) {
	var links []trace.Link
	seen := make(map[trace.SpanID]bool, len(scs))
	var first trace.SpanContext
	one := true
	for _, sc := range scs {
		if !sc.IsValid() || seen[sc.SpanID()] {
			continue
		}
		seen[sc.SpanID()] = true
		if !first.IsValid() {
			first = sc
		} else if sc.TraceID() != first.TraceID() {
			one = false
		}
		links = append(links, trace.Link{SpanContext: sc})
	}
	parent = context.Background()
	if first.IsValid() && one {
		parent = trace.ContextWithRemoteSpanContext(parent, first)
	} else {
		opts = append(opts, trace.WithNewRoot())
	}
	return parent, append(opts, trace.WithLinks(links...))
}
