package httpapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"

	"cqrsflow/internal/apierr"
	"cqrsflow/internal/auth"
	"cqrsflow/internal/command"
	"cqrsflow/internal/domain"
	"cqrsflow/internal/domain/order"
	"cqrsflow/internal/domain/product"
	"cqrsflow/internal/eventschema"
	"cqrsflow/internal/eventstore"
	"cqrsflow/internal/tracing"
)

type handlers struct {
	cfg  Config
	cmds *command.Handlers
	log  *slog.Logger
}

// body reads the request body; false when a response was already written.
func (h *handlers) body(c *gin.Context) ([]byte, bool) {
	// Reading the body must end within BodyTimeout: a slow sender gets 408
	// instead of holding a goroutine. Not every ResponseWriter supports
	// deadlines (httptest's does not), hence the ignored errors.
	rc := http.NewResponseController(c.Writer)
	_ = rc.SetReadDeadline(time.Now().Add(h.cfg.BodyTimeout))
	b, err := readBody(c.Request)
	switch {
	case errors.Is(err, errBodyTooLarge):
		c.Header("Connection", "close") // do not drain the rest of the body
		apierr.Abort(c, http.StatusRequestEntityTooLarge, "body_too_large",
			"request body exceeds "+strconv.FormatInt(h.cfg.MaxBodyBytes, 10)+" bytes", nil)
		return nil, false
	case errors.Is(err, errBodyTimeout):
		c.Header("Connection", "close") // the server must not wait for the rest
		apierr.Abort(c, http.StatusRequestTimeout, "body_timeout", "request body not received in time", nil)
		return nil, false
	case err != nil:
		c.Header("Connection", "close")
		apierr.Abort(c, http.StatusBadRequest, "invalid_input", "reading request body failed", nil)
		return nil, false
	}
	_ = rc.SetReadDeadline(time.Time{})
	return b, true
}

var printable = regexp.MustCompile(`^[\x21-\x7e]{1,255}$`)

// headers validates the headers a write may carry into o's field errors.
func headers(c *gin.Context, o *object) {
	if k, ok := c.Request.Header["Idempotency-Key"]; ok && (len(k) != 1 || !printable.MatchString(k[0])) {
		o.errs.Add("Idempotency-Key", "must be 1 to 255 printable ASCII characters, sent once")
	}
	if v := c.GetHeader("X-Correlation-ID"); v != "" && !validRequestID.MatchString(v) {
		o.errs.Add("X-Correlation-ID", "must be 1 to 128 characters of A-Z a-z 0-9 . _ : -")
	}
}

// pathID validates the :id path parameter (a UUID, as the API issues them).
func pathID(c *gin.Context, o *object) string {
	u, err := uuid.Parse(c.Param("id"))
	if err != nil || len(c.Param("id")) != 36 {
		o.errs.Add("id", "must be a UUID (as returned by the create)")
		return ""
	}
	return u.String()
}

// expected resolves If-Match and the body's expected_version; 0 when
// neither is sent.
func expected(c *gin.Context, o *object) int64 {
	hv, hset, reason := parseIfMatch(c.GetHeader("If-Match"))
	if reason != "" {
		o.errs.Add("If-Match", reason)
	}
	bv, bset := o.expectedVersion()
	switch {
	case hset && bset && hv != bv:
		o.errs.Add("expected_version", fmt.Sprintf("is %d but If-Match says %d", bv, hv))
	case hset:
		return hv
	case bset:
		return bv
	}
	return 0
}

func productInput(o *object) product.Input {
	in := product.Input{Name: o.str("name"), Description: o.str("description")}
	in.Price, _ = o.num("price")
	in.Stock, _ = o.num("stock")
	in.Currency = o.str("currency")
	return in
}

// request is what every command carries from the HTTP request. Write
// routes authenticate first, so the principal is never nil here.
func request(c *gin.Context, body []byte, status int) command.Request {
	parent, state := tracing.Inject(c.Request.Context())
	return command.Request{
		Traceparent:    parent,
		Tracestate:     state,
		Principal:      principalID(c),
		RequestID:      c.GetString(requestIDKey),
		CorrelationID:  c.GetHeader("X-Correlation-ID"),
		IdempotencyKey: c.GetHeader("Idempotency-Key"),
		Fingerprint: command.Fingerprint{Method: c.Request.Method, Route: c.FullPath(), ID: c.Param("id"),
			IfMatch: c.GetHeader("If-Match"), Body: body},
		Status: status,
		Users:  auth.FromContext(c).ActsFor(),
	}
}

// execute runs one command handler under CommandTimeout and writes its
// answer, or the error.
func execute[C any](h *handlers, c *gin.Context, aggType string, handle func(context.Context, C) (command.Result, error), cmd C) {
	ctx, cancel := context.WithTimeout(c.Request.Context(), h.cfg.CommandTimeout)
	defer cancel()
	res, err := handle(ctx, cmd)
	if err != nil {
		h.fail(c, aggType, err)
		return
	}
	if res.Replayed {
		c.Header("Idempotent-Replayed", "true")
	} else {
		c.Header("ETag", `"`+strconv.FormatInt(res.Version, 10)+`"`)
	}
	c.Data(res.Status, "application/json", res.Body)
}

func (h *handlers) createProduct(c *gin.Context) {
	body, ok := h.body(c)
	if !ok {
		return
	}
	o := decodeObject(body, false, "name", "description", "price", "currency", "stock")
	headers(c, o)
	f, err := product.Validate(productInput(o))
	if err := o.merge(err); err != nil {
		h.fail(c, product.AggregateType, err)
		return
	}
	execute(h, c, product.AggregateType, h.cmds.CreateProduct.Handle,
		command.CreateProduct{Fields: f, Request: request(c, body, http.StatusCreated)})
}

func (h *handlers) updateProduct(c *gin.Context) {
	body, ok := h.body(c)
	if !ok {
		return
	}
	o := decodeObject(body, false, "name", "description", "price", "currency", "stock", "expected_version")
	headers(c, o)
	id := pathID(c, o)
	exp := expected(c, o)
	f, err := product.Validate(productInput(o))
	if err := o.merge(err); err != nil {
		h.fail(c, product.AggregateType, err)
		return
	}
	execute(h, c, product.AggregateType, h.cmds.UpdateProduct.Handle,
		command.UpdateProduct{ID: id, ExpectedVersion: exp, Fields: f, Request: request(c, body, http.StatusOK)})
}

func (h *handlers) deleteProduct(c *gin.Context) {
	body, ok := h.body(c)
	if !ok {
		return
	}
	o := decodeObject(body, true, "reason", "expected_version")
	headers(c, o)
	id := pathID(c, o)
	exp := expected(c, o)
	reason := o.optStr("reason")
	if err := o.merge(product.ValidateReason(reason)); err != nil {
		h.fail(c, product.AggregateType, err)
		return
	}
	execute(h, c, product.AggregateType, h.cmds.DeleteProduct.Handle,
		command.DeleteProduct{ID: id, ExpectedVersion: exp, Reason: reason, Request: request(c, body, http.StatusOK)})
}

func (h *handlers) createOrder(status int) gin.HandlerFunc {
	return func(c *gin.Context) {
		body, ok := h.body(c)
		if !ok {
			return
		}
		o := decodeObject(body, false, "user_id", "product_id", "quantity", "total_price")
		headers(c, o)
		in := order.Input{UserID: o.str("user_id"), ProductID: o.str("product_id")}
		in.Quantity, _ = o.num("quantity")
		in.TotalPrice, _ = o.num("total_price")
		created, err := order.Validate(in)
		if err := o.merge(err); err != nil {
			h.fail(c, order.AggregateType, err)
			return
		}
		execute(h, c, order.AggregateType, h.cmds.CreateOrder.Handle,
			command.CreateOrder{Order: created, Request: request(c, body, status)})
	}
}

// orderAction handles POST /v1/orders/:id/{pay,ship,cancel}; the body is
// optional and may carry the action's text field and expected_version.
func (h *handlers) orderAction(action string) gin.HandlerFunc {
	field := map[string]string{"pay": "payment_reference", "ship": "tracking_number", "cancel": "reason"}[action]
	return func(c *gin.Context) {
		body, ok := h.body(c)
		if !ok {
			return
		}
		o := decodeObject(body, true, field, "expected_version")
		headers(c, o)
		id := pathID(c, o)
		exp := expected(c, o)
		text := o.optStr(field)
		if err := o.merge(order.ValidateText(field, text)); err != nil {
			h.fail(c, order.AggregateType, err)
			return
		}
		req := request(c, body, http.StatusOK)
		switch action {
		case "pay":
			execute(h, c, order.AggregateType, h.cmds.PayOrder.Handle,
				command.PayOrder{ID: id, ExpectedVersion: exp, PaymentReference: text, Request: req})
		case "ship":
			execute(h, c, order.AggregateType, h.cmds.ShipOrder.Handle,
				command.ShipOrder{ID: id, ExpectedVersion: exp, TrackingNumber: text, Request: req})
		default:
			execute(h, c, order.AggregateType, h.cmds.CancelOrder.Handle,
				command.CancelOrder{ID: id, ExpectedVersion: exp, Reason: text, Request: req})
		}
	}
}

// fail maps an error to its status and JSON body, once, here at the edge.
func (h *handlers) fail(c *gin.Context, aggType string, err error) {
	var ve *domain.ValidationError
	var se *eventschema.InvalidError
	var ce *eventstore.ConflictError
	var re *domain.RuleError
	switch {
	case errors.As(err, &ve):
		apierr.Abort(c, http.StatusBadRequest, "invalid_input", ve.Error(), ve.Fields)
	case errors.As(err, &se):
		apierr.Abort(c, http.StatusBadRequest, "schema_violation", se.Error(), se.Violations)
	case errors.As(err, &ce):
		c.Header("ETag", `"`+strconv.FormatInt(ce.Current, 10)+`"`)
		apierr.Abort(c, http.StatusConflict, "version_conflict",
			fmt.Sprintf("%s %s is at version %d, not %d", aggType, ce.AggregateID, ce.Current, ce.Expected),
			gin.H{"current_version": ce.Current, "expected_version": ce.Expected})
	case errors.Is(err, command.ErrUserNotAllowed):
		apierr.Abort(c, http.StatusForbidden, "forbidden", "this credential may not act for this user_id",
			[]domain.FieldError{{Field: "user_id", Reason: "is not a user this credential acts for"}})
	case errors.Is(err, eventstore.ErrNotFound), errors.Is(err, domain.ErrNotFound), errors.Is(err, command.ErrNotOwner):
		apierr.Abort(c, http.StatusNotFound, "not_found", aggType+" not found", gin.H{"id": c.Param("id")})
	case errors.As(err, &re):
		apierr.Abort(c, http.StatusUnprocessableEntity, re.Code, re.Message, nil)
	case errors.Is(err, eventstore.ErrIdempotencyMismatch):
		apierr.Abort(c, http.StatusUnprocessableEntity, "idempotency_key_reused",
			"this Idempotency-Key was used with a different request", nil)
	case eventstore.IsUnavailable(err):
		h.log.Warn("event store unavailable", "err", err, "request_id", c.GetString(requestIDKey))
		c.Header("Retry-After", "1")
		apierr.Abort(c, http.StatusServiceUnavailable, "unavailable", "the event store is unavailable; retry later", nil)
	default:
		h.log.Error("command failed", "err", err, "request_id", c.GetString(requestIDKey))
		apierr.Abort(c, http.StatusInternalServerError, "internal", "internal error", nil)
	}
}
