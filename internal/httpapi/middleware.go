package httpapi

import (
	"fmt"
	"log/slog"
	"mime"
	"net/http"
	"regexp"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"

	"cqrsflow/internal/apierr"
	"cqrsflow/internal/config"
)

const requestIDKey = "cqrsflow.request_id"

var validRequestID = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,128}$`)

// requestID takes X-Request-ID if it is sane, generates one otherwise,
// and echoes it.
func requestID() gin.HandlerFunc {
	return func(c *gin.Context) {
		id := c.GetHeader("X-Request-ID")
		if !validRequestID.MatchString(id) {
			id = uuid.NewString()
		}
		c.Set(requestIDKey, id)
		c.Header("X-Request-ID", id)
		c.Next()
	}
}

// observe writes the access log line and the request duration metric.
func observe(log *slog.Logger, m *metrics) gin.HandlerFunc {
	return func(c *gin.Context) {
		start := time.Now()
		c.Next()
		d := time.Since(start)
		route := c.FullPath()
		if route == "" {
			route = "unmatched"
		}
		status := c.Writer.Status()
		method := methodLabel(c.Request.Method)
		m.duration.WithLabelValues(route, method, statusClass(status)).Observe(d.Seconds())
		level := slog.LevelInfo
		if status >= 500 {
			level = slog.LevelError
		}
		if !log.Enabled(c.Request.Context(), level) {
			return
		}
		log.LogAttrs(c.Request.Context(), level, "http request",
			slog.String("method", method),
			slog.String("route", route),
			slog.String("path", truncate(c.Request.URL.Path, maxLoggedPath)),
			slog.Int("status", status),
			slog.Float64("duration_ms", float64(d.Microseconds())/1000),
			slog.Int("bytes", c.Writer.Size()),
			slog.String("request_id", c.GetString(requestIDKey)),
			slog.String("principal", principalID(c)),
			slog.String("remote", c.ClientIP()),
		)
	}
}

// Metric labels come from fixed sets, whatever the client sends: the
// method one of these or "other", the route a template or "unmatched",
// the status its class.
var methods = map[string]bool{http.MethodGet: true, http.MethodHead: true, http.MethodPost: true, http.MethodPut: true,
	http.MethodDelete: true, http.MethodPatch: true, http.MethodOptions: true}

func methodLabel(m string) string {
	if methods[m] {
		return m
	}
	return "other"
}

var statusClasses = [...]string{"1xx", "2xx", "3xx", "4xx", "5xx"}

func statusClass(status int) string {
	if status < 100 || status > 599 {
		return "other"
	}
	return statusClasses[status/100-1]
}

// maxLoggedPath bounds the path in the access log (paths are the client's).
const maxLoggedPath = 512

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// recoverJSON turns a panic into a JSON 500 (stack logged, never sent).
// The logged panic value and stack are masked: the request's credential
// and anything shaped like a password never reach the log.
func recoverJSON(log *slog.Logger) gin.HandlerFunc {
	return func(c *gin.Context) {
		defer func() {
			r := recover()
			if r == nil {
				return
			}
			if r == http.ErrAbortHandler {
				panic(r)
			}
			log.Error("panic serving request", "err", maskRequest(c, fmt.Sprint(r)), "stack", maskRequest(c, string(debug.Stack())),
				"request_id", c.GetString(requestIDKey))
			if !c.Writer.Written() {
				apierr.Abort(c, http.StatusInternalServerError, "internal", "internal error", nil)
			} else {
				c.Abort()
			}
		}()
		c.Next()
	}
}

// limitBody answers 413 for a declared Content-Length above max and caps
// what a handler can read otherwise.
func limitBody(max int64) gin.HandlerFunc {
	return func(c *gin.Context) {
		if c.Request.ContentLength > max {
			apierr.Abort(c, http.StatusRequestEntityTooLarge, "body_too_large",
				"request body exceeds "+strconv.FormatInt(max, 10)+" bytes", nil)
			return
		}
		if c.Request.Body != nil {
			c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, max)
		}
		c.Next()
	}
}

// requireJSON answers 415 when a request with a body is not application/json.
func requireJSON() gin.HandlerFunc {
	return func(c *gin.Context) {
		r := c.Request
		if r.ContentLength == 0 && len(r.TransferEncoding) == 0 {
			c.Next() // no body: nothing to check (DELETE, lifecycle actions)
			return
		}
		mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
		if err != nil || mt != "application/json" {
			apierr.Abort(c, http.StatusUnsupportedMediaType, "unsupported_media_type",
				"Content-Type must be application/json", gin.H{"content_type": r.Header.Get("Content-Type")})
			return
		}
		c.Next()
	}
}

// maskRequest hides the request's credential (the Authorization value
// and its bearer part) and password-like values in s.
func maskRequest(c *gin.Context, s string) string {
	if h := c.GetHeader("Authorization"); h != "" {
		if _, cred, ok := strings.Cut(h, " "); ok && len(strings.TrimSpace(cred)) >= 4 {
			s = strings.ReplaceAll(s, strings.TrimSpace(cred), "xxxxx")
		}
		if len(h) >= 4 {
			s = strings.ReplaceAll(s, h, "xxxxx")
		}
	}
	return config.MaskURL(s)
}
