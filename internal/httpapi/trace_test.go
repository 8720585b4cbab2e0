package httpapi

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"cqrsflow/internal/eventschema"
	"cqrsflow/internal/eventstore"
)

const knownParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

// tracedEngine is unitEngine with tracing on into rec; the store records
// the metadata of every command it is given.
func tracedEngine(t testing.TB, rec sdktrace.SpanProcessor, metas *[]map[string]string, mu *sync.Mutex) *gin.Engine {
	t.Helper()
	schemas, err := eventschema.Load()
	if err != nil {
		t.Fatal(err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	inner := foldingStore()
	store := storeFunc(func(ctx context.Context, cmd eventstore.Command) (eventstore.Result, error) {
		if metas != nil {
			mu.Lock()
			*metas = append(*metas, map[string]string{"traceparent": string(cmd.Metadata.Traceparent),
				"tracestate": string(cmd.Metadata.Tracestate), "span_trace": trace.SpanContextFromContext(ctx).TraceID().String()})
			mu.Unlock()
		}
		return inner(ctx, cmd)
	})
	cfg := DefaultConfig()
	cfg.RateLimitRPS = 0
	e, err := NewEngine(cfg, Deps{Store: eventstore.Traced(store, tp), Schemas: schemas, Auth: unitAuth(t, "unit:"+unitKey),
		Registerer: prometheus.NewRegistry(), Modules: modules(nil), Tracing: tp})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// A write with a known traceparent: the request span continues that
// trace, the append is its child, and the trace context stored with the
// events is the request span's.
func TestTraceparentHonoured(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	var metas []map[string]string
	var mu sync.Mutex
	e := tracedEngine(t, rec, &metas, &mu)
	w := serve(e, "PUT", "/v1/products/"+someID, `{"name":"a","price":1,"stock":1}`,
		map[string]string{"traceparent": knownParent, "tracestate": "vendor=x"})
	if w.Code != 200 {
		t.Fatal(w.Code, w.Body)
	}
	spans := rec.Ended()
	byName := map[string]sdktrace.ReadOnlySpan{}
	for _, s := range spans {
		byName[s.Name()] = s
	}
	req, app := byName["PUT /v1/products/:id"], byName["eventstore.append"]
	if req == nil || app == nil {
		t.Fatalf("spans %v", names(spans))
	}
	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	if req.SpanContext().TraceID().String() != traceID || req.Parent().SpanID().String() != "00f067aa0ba902b7" {
		t.Errorf("request span trace %s parent %s", req.SpanContext().TraceID(), req.Parent().SpanID())
	}
	if app.Parent().SpanID() != req.SpanContext().SpanID() || app.SpanContext().TraceID() != req.SpanContext().TraceID() {
		t.Errorf("append span is not the request span's child")
	}
	if len(metas) != 1 {
		t.Fatalf("store got %d commands", len(metas))
	}
	want := "00-" + traceID + "-" + req.SpanContext().SpanID().String() + "-01"
	if metas[0]["traceparent"] != want || metas[0]["tracestate"] != "vendor=x" {
		t.Errorf("stored trace context %v, want traceparent %s", metas[0], want)
	}
}

// Malformed trace context is ignored: the request is answered as without
// it, in a new trace (a valid traceparent with a malformed tracestate
// keeps its trace, without the state); never a 4xx or 5xx because of it.
func TestMalformedTraceparentIgnored(t *testing.T) {
	for _, tc := range []struct {
		parent, state string
		kept          bool // the traceparent is valid
	}{
		{"garbage", "", false},
		{"00-00000000000000000000000000000000-00f067aa0ba902b7-01", "", false},
		{"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "", false},
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-zz", "", false},
		{strings.Repeat("a", 4000), strings.Repeat("=,", 2000), false},
		{knownParent, "\x7f\x01bad==,,", true},
	} {
		rec := tracetest.NewSpanRecorder()
		var metas []map[string]string
		var mu sync.Mutex
		e := tracedEngine(t, rec, &metas, &mu)
		w := serve(e, "PUT", "/v1/products/"+someID, `{"name":"a","price":1,"stock":1}`,
			map[string]string{"traceparent": tc.parent, "tracestate": tc.state})
		if w.Code != 200 {
			t.Errorf("traceparent %.40q: %d %s", tc.parent, w.Code, w.Body)
			continue
		}
		spans := rec.Ended()
		if len(spans) != 2 {
			t.Errorf("traceparent %.40q: spans %v", tc.parent, names(spans))
			continue
		}
		for _, s := range spans {
			if s.Name() != "eventstore.append" && s.Parent().IsValid() != tc.kept {
				t.Errorf("traceparent %.40q: request span's parent %v", tc.parent, s.Parent())
			}
		}
		if len(metas) != 1 || !strings.HasPrefix(metas[0]["traceparent"], "00-"+metas[0]["span_trace"]+"-") || metas[0]["tracestate"] != "" {
			t.Errorf("traceparent %.40q: stored %v", tc.parent, metas)
		}
	}
}

// Without tracing nothing is stored, whatever the request carries.
func TestUntracedStoresNoTraceContext(t *testing.T) {
	var got eventstore.Command
	inner := foldingStore()
	e := unitEngine(t, storeFunc(func(ctx context.Context, cmd eventstore.Command) (eventstore.Result, error) {
		got = cmd
		return inner(ctx, cmd)
	}), nil)
	w := serve(e, "PUT", "/v1/products/"+someID, `{"name":"a","price":1,"stock":1}`, map[string]string{"traceparent": knownParent})
	if w.Code != 200 || got.Metadata.Traceparent != "" || got.Metadata.Tracestate != "" {
		t.Fatalf("%d, metadata %+v", w.Code, got.Metadata)
	}
}

// Health and metrics scrapes are not traced.
func TestOperatorRoutesUntraced(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	e := tracedEngine(t, rec, nil, nil)
	for _, p := range []string{"/healthz", "/readyz"} {
		if w := serve(e, "GET", p, "", nil); w.Code != 200 {
			t.Fatal(p, w.Code)
		}
	}
	if n := len(rec.Ended()); n != 0 {
		t.Fatalf("%d spans for health checks", n)
	}
}

func names(spans []sdktrace.ReadOnlySpan) []string {
	var out []string
	for _, s := range spans {
		out = append(out, s.Name())
	}
	return out
}

// BenchmarkUpdateProductTraced is BenchmarkUpdateProduct with tracing
// on and every request sampled (spans end in a no-op processor), for
// the per-request cost of tracing beside the untraced benchmark.
func BenchmarkUpdateProductTraced(b *testing.B) {
	e := tracedEngine(b, discard{}, nil, nil)
	body := `{"name":"bench product","description":"a product created by the write benchmark","price":12.34,"stock":5}`
	hdr := map[string]string{"traceparent": knownParent}
	b.ReportAllocs()
	for b.Loop() {
		w := serve(e, "PUT", "/v1/products/"+someID, body, hdr)
		if w.Code != 200 {
			b.Fatal(w.Code, w.Body)
		}
	}
}

type discard struct{}

func (discard) OnStart(context.Context, sdktrace.ReadWriteSpan) {}
func (discard) OnEnd(sdktrace.ReadOnlySpan)                     {}
func (discard) Shutdown(context.Context) error                  { return nil }
func (discard) ForceFlush(context.Context) error                { return nil }
