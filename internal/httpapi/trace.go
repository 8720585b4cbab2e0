package httpapi

import (
	"net/http"

	"github.com/gin-gonic/gin"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"cqrsflow/internal/tracing"
)

// untraced are the routes of the operators' tools: a scrape every few
// seconds is no request worth a trace.
var untraced = map[string]bool{"/healthz": true, "/readyz": true, "/metrics": true}

// traceRequests starts a server span per request, named after the route
// template, as a child of the request's W3C traceparent when it carries a
// valid one. A malformed traceparent or tracestate is ignored (the span
// starts a new trace): trace context never makes a request fail. The
// engine installs it only when tracing is on, so an api without tracing
// does no tracing work at all.
func traceRequests(tr trace.Tracer) gin.HandlerFunc {
	return func(c *gin.Context) {
		route := c.FullPath()
		if untraced[route] {
			c.Next()
			return
		}
		if route == "" {
			route = "unmatched"
		}
		method := methodLabel(c.Request.Method)
		ctx := tracing.Propagator.Extract(c.Request.Context(), propagation.HeaderCarrier(c.Request.Header))
		ctx, span := tr.Start(ctx, method+" "+route, trace.WithSpanKind(trace.SpanKindServer),
			trace.WithAttributes(attribute.String("http.request.method", method), attribute.String("http.route", route)))
		defer span.End()
		c.Request = c.Request.WithContext(ctx)
		c.Next()
		status := c.Writer.Status()
		span.SetAttributes(attribute.Int("http.response.status_code", status),
			attribute.String("cqrsflow.request_id", c.GetString(requestIDKey)))
		if status >= http.StatusInternalServerError {
			span.SetStatus(codes.Error, http.StatusText(status))
		}
	}
}
