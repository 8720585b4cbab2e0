package read

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	mrand "math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strconv"

	"cqrsflow/internal/query"
	"cqrsflow/internal/testenv/binary"
)

// route is one read route and its direct equivalent. Both build their
// request from the same draw n in [0, draws) — a product, a page — so
// the two sides ask Elasticsearch the same things.
type route struct {
	name     string
	api      string // what the api side calls, for the output
	direct   string // what the direct side calls
	draws    int
	apiReq   func(ctx context.Context, n int) (*http.Request, error)
	esReq    func(ctx context.Context, n int) (*http.Request, error)
	limit    int // 0: no list (get by id)
	hasTotal bool
}

// listLimit is the page size of the search and list routes.
const listLimit = 20

// route returns the route called name (one of routeNames).
func (b *bench) route(name string) route {
	esPath := b.s.ElasticsearchURL + "/" + url.PathEscape(b.alias)
	pages := max(1, min(50, len(b.ids)/listLimit)) // pages of the list that are full
	switch name {
	case "search":
		body := query.ProductSearchBody(query.SearchParams{Q: b.s.Query, Paging: query.Paging{Page: 1, Limit: listLimit}})
		apiURL := b.apiURL + "/v1/products/search?" + url.Values{"q": {b.s.Query}, "limit": {strconv.Itoa(listLimit)}}.Encode()
		return route{name: name, api: "GET /v1/products/search?q=" + b.s.Query + "&limit=20", direct: "POST /<alias>/_search, the api's body",
			draws: 1, limit: listLimit, hasTotal: true,
			apiReq: func(ctx context.Context, _ int) (*http.Request, error) { return b.get(ctx, apiURL) },
			esReq:  func(ctx context.Context, _ int) (*http.Request, error) { return b.post(ctx, esPath+"/_search", body) }}
	case "get":
		return route{name: name, api: "GET /v1/products/{id}", direct: "GET /<alias>/_doc/{id}",
			draws: len(b.ids),
			apiReq: func(ctx context.Context, n int) (*http.Request, error) {
				return b.get(ctx, b.apiURL+"/v1/products/"+b.ids[n])
			},
			esReq: func(ctx context.Context, n int) (*http.Request, error) {
				return b.get(ctx, esPath+"/_doc/"+url.PathEscape(b.ids[n]))
			}}
	default: // list
		bodies := make([][]byte, pages)
		for p := range bodies {
			bodies[p] = query.ProductListBody(query.Paging{Page: p + 1, Limit: listLimit})
		}
		return route{name: name, api: fmt.Sprintf("GET /v1/products?page=1..%d&limit=20", pages), direct: "POST /<alias>/_search, the api's body",
			draws: pages, limit: listLimit, hasTotal: true,
			apiReq: func(ctx context.Context, n int) (*http.Request, error) {
				return b.get(ctx, b.apiURL+"/v1/products?limit="+strconv.Itoa(listLimit)+"&page="+strconv.Itoa(n+1))
			},
			esReq: func(ctx context.Context, n int) (*http.Request, error) {
				return b.post(ctx, esPath+"/_search", bodies[n])
			}}
	}
}

// batchKind is the kind label of the api's batches that carry r's reads
// (cqrsflow_read_batch_reads): gets by id go in _mget, searches and lists
// in _msearch.
func (r route) batchKind() string {
	if r.name == "get" {
		return "get"
	}
	return "search"
}

func (b *bench) get(ctx context.Context, u string) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err == nil && req.URL.Host == b.api.Addr {
		req.Header.Set("Authorization", "Bearer "+b.key)
	}
	return req, err
}

func (b *bench) post(ctx context.Context, u string, body []byte) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err == nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return req, err
}

// do sends req and reads the whole answer, which must be a 200.
func (b *bench) do(req *http.Request, into *bytes.Buffer) error {
	res, err := b.client.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	into.Reset()
	if _, err := into.ReadFrom(res.Body); err != nil {
		return fmt.Errorf("%s %s: reading the answer: %w", req.Method, req.URL.Path, err)
	}
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: %s %.300s", req.Method, req.URL.Path, res.Status, into.Bytes())
	}
	return nil
}

// viaHop is build with the request sent to the hop (the floor) instead
// of Elasticsearch: the same method, path, query and body.
func (b *bench) viaHop(build func(context.Context, int) (*http.Request, error)) func(context.Context, int) (*http.Request, error) {
	return func(ctx context.Context, n int) (*http.Request, error) {
		req, err := build(ctx, n)
		if err == nil {
			req.URL.Host, req.Host = b.hop.Addr, b.hop.Addr
		}
		return req, err
	}
}

// ops returns the closed-loop operations of the sides: each worker keeps
// its own buffer for the answers (the sides run one after the other).
// hop is nil without the hop.
func (b *bench) ops(r route) (api, direct, hop func(ctx context.Context, worker int) error) {
	bufs := make([]bytes.Buffer, b.s.Clients)
	side := func(build func(context.Context, int) (*http.Request, error)) func(context.Context, int) error {
		return func(ctx context.Context, w int) error {
			req, err := build(ctx, mrand.IntN(r.draws))
			if err != nil {
				return err
			}
			return b.do(req, &bufs[w%len(bufs)])
		}
	}
	if b.hop != nil {
		hop = side(b.viaHop(r.esReq))
	}
	return side(r.apiReq), side(r.esReq), hop
}

// answer is what the check compares of two answers.
type answer struct {
	ids     []string
	total   int
	version int64
}

// check asks both sides the same (the first draws) and compares what they
// found: the same products in the same order, the same total, the same
// versions.
func (b *bench) check(ctx context.Context, r route) error {
	for n := range min(3, r.draws) {
		var buf bytes.Buffer
		a, err := b.answer(ctx, r, r.apiReq, n, &buf, false)
		if err != nil {
			return fmt.Errorf("api: %w; api log:\n%s", err, b.apiLog())
		}
		d, err := b.answer(ctx, r, r.esReq, n, &buf, true)
		if err != nil {
			return fmt.Errorf("elasticsearch: %w", err)
		}
		if !slices.Equal(a.ids, d.ids) || a.total != d.total || a.version != d.version {
			return fmt.Errorf("api found %+v, Elasticsearch %+v", a, d)
		}
		if b.hop != nil {
			h, err := b.answer(ctx, r, b.viaHop(r.esReq), n, &buf, true)
			if err != nil {
				return fmt.Errorf("hop: %w; hop log:\n%s", err, binary.Tail(b.hop.LogPath, 15))
			}
			if !slices.Equal(h.ids, d.ids) || h.total != d.total || h.version != d.version {
				return fmt.Errorf("the hop found %+v, Elasticsearch %+v", h, d)
			}
		}
		if len(a.ids) == 0 || (r.limit > 0 && len(a.ids) != r.limit) {
			return fmt.Errorf("found %d products, want %d: the prefill did not land", len(a.ids), max(1, r.limit))
		}
	}
	return nil
}

func (b *bench) answer(ctx context.Context, r route, build func(context.Context, int) (*http.Request, error), n int, buf *bytes.Buffer, direct bool) (answer, error) {
	req, err := build(ctx, n)
	if err != nil {
		return answer{}, err
	}
	if err := b.do(req, buf); err != nil {
		return answer{}, err
	}
	return decodeAnswer(buf.Bytes(), r.limit > 0, direct)
}

// decodeAnswer reads an answer of either side: the api's product or page,
// Elasticsearch's document or hits.
func decodeAnswer(body []byte, list, direct bool) (answer, error) {
	type product struct {
		ID      string `json:"id"`
		Version int64  `json:"version"`
	}
	var a answer
	var err error
	switch {
	case !list && !direct:
		var p product
		err = json.Unmarshal(body, &p)
		a.ids, a.version = []string{p.ID}, p.Version
	case !list:
		var d struct {
			Source product `json:"_source"`
		}
		err = json.Unmarshal(body, &d)
		a.ids, a.version = []string{d.Source.ID}, d.Source.Version
	case !direct:
		var p struct {
			Items []product `json:"items"`
			Total int       `json:"total"`
		}
		err = json.Unmarshal(body, &p)
		for _, it := range p.Items {
			a.ids = append(a.ids, it.ID)
			a.version += it.Version
		}
		a.total = p.Total
	default:
		var s struct {
			Hits struct {
				Total struct {
					Value int `json:"value"`
				} `json:"total"`
				Hits []struct {
					Source product `json:"_source"`
				} `json:"hits"`
			} `json:"hits"`
		}
		err = json.Unmarshal(body, &s)
		for _, h := range s.Hits.Hits {
			a.ids = append(a.ids, h.Source.ID)
			a.version += h.Source.Version
		}
		a.total = s.Hits.Total.Value
	}
	if err != nil {
		return a, fmt.Errorf("decoding %.200s: %w", body, err)
	}
	return a, nil
}
