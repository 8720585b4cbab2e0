package query

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/elastic/go-elasticsearch/v8"
	"github.com/gin-gonic/gin"
	fastjson "github.com/goccy/go-json"

	"cqrsflow/internal/apierr"
	"cqrsflow/internal/auth"
	"cqrsflow/internal/esindex"
)

// Page is a list response.
type Page[T any] struct {
	Items []T `json:"items"`
	Page  int `json:"page"`
	Limit int `json:"limit"`
	Total int `json:"total"`
}

// search runs body (see bodies.go) on index; a missing index reads as no
// hits. With batching on (Handler.Batch) it is one part of an _msearch.
func search[T any](ctx context.Context, h *Handler, index string, body []byte, pg Paging) (Page[T], error) {
	out := Page[T]{Items: []T{}, Page: pg.Page, Limit: pg.Limit}
	var r searchAnswer[T]
	var err error
	if h.searches != nil {
		err = searchBatched(ctx, h.searches, index, body, &r)
	} else {
		err = searchAlone(ctx, h.es, index, body, &r)
	}
	if errors.Is(err, errNoIndex) {
		return out, nil
	}
	if err != nil {
		return out, err
	}
	out.Total = r.Hits.Total.Value
	if len(r.Hits.Hits) > 0 {
		out.Items = make([]T, len(r.Hits.Hits))
		for i := range r.Hits.Hits {
			out.Items[i] = r.Hits.Hits[i].Source
		}
	}
	return out, nil
}

// errNoIndex: the index (alias) searched does not exist.
var errNoIndex = errors.New("no such index")

// searchAlone runs body on index as one _search.
func searchAlone[T any](ctx context.Context, es *elasticsearch.Client, index string, body []byte, r *searchAnswer[T]) error {
	res, err := es.Search(es.Search.WithIndex(index), es.Search.WithBody(bytes.NewReader(body)), es.Search.WithContext(ctx))
	if err != nil {
		return fmt.Errorf("%w: search %s: %w", esindex.ErrUnavailable, index, err)
	}
	defer res.Body.Close()
	if res.StatusCode == http.StatusNotFound {
		return errNoIndex
	}
	if res.IsError() {
		rb, _ := io.ReadAll(io.LimitReader(res.Body, 1024))
		return statusError("search "+index, res.StatusCode, res.Status(), rb)
	}
	if err := decodeBody(res.Body, r); err != nil {
		if !errors.Is(err, esindex.ErrUnavailable) {
			err = fmt.Errorf("%w: %w", esindex.ErrUnavailable, err) // as any undecodable answer
		}
		return fmt.Errorf("decoding search answer of %s: %w", index, err)
	}
	return nil
}

// msearchPart is one response of an _msearch: a search's answer, or its
// error and status.
type msearchPart[T any] struct {
	searchAnswer[T]
	Status int             `json:"status"`
	Error  json.RawMessage `json:"error"`
}

// searchBatched runs body on index as one search of an _msearch.
func searchBatched[T any](ctx context.Context, q *coalescer, index string, body []byte, r *searchAnswer[T]) error {
	if bytes.IndexByte(body, '\n') >= 0 { // one line of the _msearch's NDJSON
		var c bytes.Buffer
		if err := json.Compact(&c, body); err != nil {
			return fmt.Errorf("search %s: body: %w", index, err)
		}
		body = c.Bytes()
	}
	part, err := q.do(ctx, &readCall{index: index, body: body})
	if err != nil {
		return err
	}
	var p msearchPart[T]
	if err := fastjson.Unmarshal(part, &p); err != nil {
		return fmt.Errorf("decoding search answer of %s: %w: %w: %w", index, esindex.ErrUnavailable, errShape, err)
	}
	switch {
	case p.Error == nil && (p.Status == 0 || p.Status == http.StatusOK):
		*r = p.searchAnswer
		return nil
	case p.Status == http.StatusNotFound:
		return errNoIndex
	}
	return statusError("search "+index, p.Status, fmt.Sprintf("%d %s", p.Status, http.StatusText(p.Status)), truncate(p.Error, 1024))
}

// statusError is the error of an Elasticsearch answer with status code
// (status its text): 429 and 5xx wrap esindex.ErrUnavailable (retry
// later), other codes are the api's fault.
func statusError(what string, code int, status string, body []byte) error {
	e := fmt.Errorf("%s: %s: %s", what, status, body)
	if code == http.StatusTooManyRequests || code >= 500 {
		return fmt.Errorf("%w: %w", esindex.ErrUnavailable, e)
	}
	return e
}

func truncate(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}

func (h *Handler) listProducts(c *gin.Context) {
	pg, err := ParsePaging(c)
	if err != nil {
		badParam(c, err)
		return
	}
	ctx, cancel := h.ctx(c)
	defer cancel()
	page, err := search[Product](ctx, h, h.products, ProductListBody(pg), pg)
	if err != nil {
		h.fail(c, err)
		return
	}
	respondPage(h, c, &page)
}

func (h *Handler) searchProducts(c *gin.Context) {
	p, err := ParseSearch(c)
	if err != nil {
		badParam(c, err)
		return
	}
	ctx, cancel := h.ctx(c)
	defer cancel()
	page, err := search[Product](ctx, h, h.products, ProductSearchBody(p), p.Paging)
	if err != nil {
		h.fail(c, err)
		return
	}
	respondPage(h, c, &page)
}

// respondPage answers 200 with pg.
func respondPage[T any, P interface {
	*T
	encodable
}](h *Handler, c *gin.Context, pg *Page[T]) {
	if err := respond(c, func(b []byte) ([]byte, error) { return appendPage[T, P](b, pg) }); err != nil {
		h.fail(c, err)
	}
}

var orderStatuses = map[string]bool{"created": true, "paid": true, "shipped": true, "cancelled": true}

// orderUser resolves user_id of an order list for principal p: a
// principal bound to one user lists that user's orders without naming it;
// one bound to several must name one of them (403 for any other); admin
// may leave it out to list every order ("" returned).
func orderUser(c *gin.Context, p *auth.Principal) (string, error) {
	user, err := textParam(c, "user_id", MaxUserID)
	if err != nil {
		return "", err
	}
	switch {
	case user != "" && !p.MayActFor(user):
		return "", errForbiddenUser
	case user != "":
		return user, nil
	case p.Bound() && len(p.Users) == 1:
		return p.Users[0], nil
	case p.Scopes.Has(auth.Admin):
		return "", nil
	}
	return "", &fieldError{"user_id", fmt.Sprintf("is required (1..%d characters)", MaxUserID)}
}

var errForbiddenUser = errors.New("user_id is not a user this credential acts for")

func (h *Handler) listOrders(c *gin.Context) {
	p := auth.FromContext(c)
	if p == nil {
		unauthenticated(c)
		return
	}
	pg, err := ParsePaging(c)
	if err != nil {
		badParam(c, err)
		return
	}
	user, err := orderUser(c, p)
	if errors.Is(err, errForbiddenUser) {
		apierr.Abort(c, http.StatusForbidden, "forbidden", "this credential may not read the orders of this user_id",
			map[string]string{"field": "user_id", "reason": err.Error()})
		return
	}
	if err != nil {
		badParam(c, err)
		return
	}
	status := c.Query("status")
	if status != "" && !orderStatuses[status] {
		badParam(c, &fieldError{"status", fmt.Sprintf("%s is not one of created, paid, shipped, cancelled", quote(status))})
		return
	}
	ctx, cancel := h.ctx(c)
	defer cancel()
	page, err := search[Order](ctx, h, h.orders, orderListBody(user, status, pg), pg)
	if err != nil {
		h.fail(c, err)
		return
	}
	respondPage(h, c, &page)
}
