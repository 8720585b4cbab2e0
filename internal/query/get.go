package query

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"
	fastjson "github.com/goccy/go-json"

	"cqrsflow/internal/apierr"
	"cqrsflow/internal/auth"
	"cqrsflow/internal/esindex"
)

// document is what a get by id needs of a read-model document.
type document interface {
	version() int64
	deleted() bool
	encodable
}

func (h *Handler) getProduct(c *gin.Context) {
	getByID(h, c, h.products, "product", func(*Product) bool { return true })
}

// getOrder serves an order to a principal that may act for its user; to
// any other the order does not exist (404 after the same wait), so order
// ids of other users reveal nothing.
func (h *Handler) getOrder(c *gin.Context) {
	p := auth.FromContext(c)
	if p == nil {
		unauthenticated(c)
		return
	}
	getByID(h, c, h.orders, "order", func(o *Order) bool { return p.MayActFor(o.UserID) })
}

// getByID answers GET /v1/<kind>s/{id}[?min_version=N&wait=D] with the
// document of index. The projector applies events asynchronously, so a
// client that just wrote version N may read an older document; with
// min_version it gets version >= N if the read model reaches it within
// wait, and otherwise, once wait is over, the document it has with
// X-Read-Model-Stale: true — a stale answer, not an error, because the
// write did succeed. X-Read-Model-Version is the version served whenever a
// document exists. Polling (a realtime GET, every pollEvery) keeps the
// read side free of any subscription to the projector.
//
// visible hides documents the caller may not see: they answer as if absent.
func getByID[T any, P interface {
	*T
	document
}](h *Handler, c *gin.Context, index, kind string, visible func(P) bool) {
	id, err := ParseID(c.Param("id"))
	if err != nil {
		badParam(c, err)
		return
	}
	want, err := ParseFreshness(c)
	if err != nil {
		badParam(c, err)
		return
	}
	if want.MinVersion > 0 && want.Wait > 0 && h.waits != nil {
		leave, ok := h.waits.Enter(c)
		if !ok {
			c.Header("Retry-After", "1")
			apierr.Abort(c, http.StatusTooManyRequests, "too_many_waits",
				"too many read-your-writes waits in progress from this client; retry later or without wait", nil)
			return
		}
		defer leave()
	}
	deadline := time.Now().Add(want.Wait)
	for {
		ctx, cancel := h.ctx(c)
		var doc T
		found, err := getDoc(ctx, h, index, id, &doc)
		cancel()
		if err != nil {
			h.fail(c, err)
			return
		}
		d := P(&doc)
		found = found && visible(d)
		reached := found && d.version() >= want.MinVersion
		if reached || want.MinVersion == 0 || !time.Now().Before(deadline) || c.Request.Context().Err() != nil {
			if found {
				c.Header(HeaderVersion, strconv.FormatInt(d.version(), 10))
			}
			if want.MinVersion > 0 && !reached {
				c.Header(HeaderStale, "true")
			}
			if !found || d.deleted() {
				apierr.Abort(c, http.StatusNotFound, "not_found", kind+" not found", map[string]string{"id": id})
				return
			}
			if err := respond(c, d.appendJSON); err != nil {
				h.fail(c, err)
			}
			return
		}
		select {
		case <-c.Request.Context().Done():
		case <-time.After(min(h.pollEvery, time.Until(deadline))):
		}
	}
}

// getDoc reads one document by id (a realtime GET through the alias, or
// one document of an _mget with batching on). The id is path-escaped
// although ParseID admits only UUIDs: whatever reaches this function
// stays one path segment of one GET (or one JSON string of an _mget).
func getDoc[T any](ctx context.Context, h *Handler, index, id string, v *T) (found bool, err error) {
	if h.gets != nil {
		return getBatched(ctx, h.gets, index, id, v)
	}
	res, err := h.es.Get(url.PathEscape(index), url.PathEscape(id), h.es.Get.WithContext(ctx))
	if err != nil {
		return false, fmt.Errorf("%w: get %s/%s: %w", esindex.ErrUnavailable, index, id, err)
	}
	defer res.Body.Close()
	if res.StatusCode == http.StatusNotFound {
		return false, nil // document or index missing
	}
	if res.IsError() {
		b, _ := io.ReadAll(io.LimitReader(res.Body, 1024))
		return false, statusError("get "+index+"/"+id, res.StatusCode, res.Status(), b)
	}
	var a docAnswer[T]
	if err := decodeBody(res.Body, &a); err != nil {
		return false, fmt.Errorf("decoding document %s: %w", id, err)
	}
	if a.Source == nil {
		return false, fmt.Errorf("decoding document %s: %w: no _source", id, errShape)
	}
	*v = *a.Source
	return true, nil
}

// mgetDoc is one document of an _mget answer: found with its _source, not
// found, or an error of its own.
type mgetDoc[T any] struct {
	Found  bool `json:"found"`
	Source *T   `json:"_source"`
	Error  *struct {
		Type   string `json:"type"`
		Reason string `json:"reason"`
	} `json:"error"`
}

// getBatched reads one document as a part of an _mget.
func getBatched[T any](ctx context.Context, q *coalescer, index, id string, v *T) (bool, error) {
	part, err := q.do(ctx, &readCall{index: index, id: id})
	if err != nil {
		return false, err
	}
	var d mgetDoc[T]
	if err := fastjson.Unmarshal(part, &d); err != nil {
		return false, fmt.Errorf("decoding document %s: %w: %w", id, errShape, err)
	}
	switch {
	case d.Error != nil && d.Error.Type == "index_not_found_exception":
		return false, nil // as a GET's 404
	case d.Error != nil:
		// A document's own failure (a shard not available, a rejection):
		// what a GET answers with a 5xx.
		return false, fmt.Errorf("%w: get %s/%s: %s: %.512s", esindex.ErrUnavailable, index, id, d.Error.Type, d.Error.Reason)
	case !d.Found:
		return false, nil
	case d.Source == nil:
		return false, fmt.Errorf("decoding document %s: %w: no _source", id, errShape)
	}
	*v = *d.Source
	return true, nil
}
