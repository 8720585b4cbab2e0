// Package esindex holds the Elasticsearch helpers of the read models:
// versioned indices behind aliases (products → products_v1), atomic alias
// swaps, _mget of current documents with their versions, and _bulk writes
// with the aggregate version as external version.
//
// Only server-core APIs are used (no scripts, no reindex), so the local
// single-node stack and the full image behave the same.
package esindex

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"

	"github.com/elastic/go-elasticsearch/v8"
	"github.com/elastic/go-elasticsearch/v8/esapi"
	"golang.org/x/sync/errgroup"
)

// ErrUnavailable marks a failure worth retrying: Elasticsearch unreachable,
// overloaded (429) or failing (5xx).
var ErrUnavailable = errors.New("elasticsearch unavailable")

// ErrNotFound is returned when an index or alias does not exist.
var ErrNotFound = errors.New("not found")

// ErrRejected marks a request Elasticsearch refused for what it carries
// (400 bad request, 413 too large, any other 4xx but 404, 408, 409 and
// 429): sending it again cannot succeed.
var ErrRejected = errors.New("elasticsearch rejected the request")

// MaxIDBytes is the longest document id Elasticsearch accepts.
const MaxIDBytes = 512

// MaxDocBytes bounds one document the projector writes. Elasticsearch has
// no per-document limit below http.max_content_length, but a document near
// its indexing-pressure limit (10% of the heap) is refused with 429 for
// ever, which looks transient; far below that, a read-model document this
// large is a bug or hostile data, so it is refused before it is sent.
const MaxDocBytes = 4 << 20

// Permanent reports whether an HTTP status of an Elasticsearch answer (a
// whole request's or one bulk item's) says retrying cannot help: a 4xx
// other than 408 (timeout) and 429 (back-pressure). 409 (version
// conflict) is permanent too; the projector reads it as "stale", not as
// an error.
func Permanent(status int) bool {
	return status >= 400 && status < 500 && status != http.StatusRequestTimeout && status != http.StatusTooManyRequests
}

// AliasName is the alias queries read: <prefix><projection>.
func AliasName(prefix, projection string) string { return prefix + projection }

// IndexName is a versioned index behind the alias: <prefix><projection>_v<N>.
func IndexName(prefix, projection string, version int) string {
	return prefix + projection + "_v" + strconv.Itoa(version)
}

// New returns a client for url without credentials (the local stack's
// node, tests); the binaries connect with Settings.Client.
func New(url string) (*elasticsearch.Client, error) {
	return Settings{URL: url}.Client()
}

// Ping checks the cluster answers (cluster health, any status but red).
func Ping(ctx context.Context, es *elasticsearch.Client) error {
	res, err := es.Cluster.Health(es.Cluster.Health.WithContext(ctx))
	if err := check(res, err, "cluster health"); err != nil {
		return err
	}
	defer res.Body.Close()
	var h struct {
		Status string `json:"status"`
	}
	if err := json.NewDecoder(res.Body).Decode(&h); err != nil {
		return fmt.Errorf("%w: decoding cluster health: %w", ErrUnavailable, err)
	}
	if h.Status == "red" {
		return fmt.Errorf("%w: cluster health red", ErrUnavailable)
	}
	return nil
}

// check turns a transport error or an error status into an error that
// wraps ErrUnavailable when retrying can help. On success it leaves the
// body open for the caller.
func check(res *esapi.Response, err error, what string) error {
	if err != nil {
		return fmt.Errorf("%w: %s: %w", ErrUnavailable, what, err)
	}
	if !res.IsError() {
		return nil
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(res.Body, 2048))
	e := fmt.Errorf("%s: %s: %s", what, res.Status(), strings.TrimSpace(string(body)))
	switch {
	case res.StatusCode == http.StatusNotFound:
		return fmt.Errorf("%w: %w", ErrNotFound, e)
	case Permanent(res.StatusCode):
		return fmt.Errorf("%w: %w", ErrRejected, e)
	}
	return fmt.Errorf("%w: %w", ErrUnavailable, e)
}

// EnsureIndex creates index with body (settings + mappings) unless it exists.
func EnsureIndex(ctx context.Context, es *elasticsearch.Client, index string, body []byte) error {
	res, err := es.Indices.Exists([]string{index}, es.Indices.Exists.WithContext(ctx))
	if err != nil {
		return fmt.Errorf("%w: checking index %s: %w", ErrUnavailable, index, err)
	}
	res.Body.Close()
	if res.StatusCode == http.StatusOK {
		return nil
	}
	res, err = es.Indices.Create(index, es.Indices.Create.WithBody(bytes.NewReader(body)), es.Indices.Create.WithContext(ctx),
		es.Indices.Create.WithWaitForActiveShards("1"))
	if err != nil {
		return fmt.Errorf("%w: creating index %s: %w", ErrUnavailable, index, err)
	}
	defer res.Body.Close()
	if res.StatusCode == http.StatusBadRequest {
		b, _ := io.ReadAll(res.Body)
		if bytes.Contains(b, []byte("resource_already_exists_exception")) {
			return nil
		}
		return fmt.Errorf("creating index %s: %s: %s", index, res.Status(), b)
	}
	return check(res, nil, "creating index "+index)
}

// AliasTargets returns the indices alias points to (sorted); ErrNotFound
// when the alias does not exist.
func AliasTargets(ctx context.Context, es *elasticsearch.Client, alias string) ([]string, error) {
	res, err := es.Indices.GetAlias(es.Indices.GetAlias.WithName(alias), es.Indices.GetAlias.WithContext(ctx))
	if err := check(res, err, "getting alias "+alias); err != nil {
		return nil, err
	}
	defer res.Body.Close()
	var m map[string]json.RawMessage
	if err := json.NewDecoder(res.Body).Decode(&m); err != nil {
		return nil, fmt.Errorf("decoding alias %s: %w", alias, err)
	}
	out := make([]string, 0, len(m))
	for idx := range m {
		out = append(out, idx)
	}
	sort.Strings(out)
	return out, nil
}

// EnsureAlias makes sure alias exists. If it does not, it is created on
// index (which EnsureIndex should have created). It returns the alias's
// target indices.
func EnsureAlias(ctx context.Context, es *elasticsearch.Client, alias, index string) ([]string, error) {
	targets, err := AliasTargets(ctx, es, alias)
	if err == nil {
		return targets, nil
	}
	if !errors.Is(err, ErrNotFound) {
		return nil, err
	}
	if _, err := SwapAlias(ctx, es, alias, index); err != nil {
		return nil, err
	}
	return []string{index}, nil
}

type aliasAction map[string]map[string]any

// SwapAlias points alias at index only, in ONE _aliases request (remove
// from every current target + add): readers never see no index or two.
// It returns the previous targets.
func SwapAlias(ctx context.Context, es *elasticsearch.Client, alias, index string) ([]string, error) {
	old, err := AliasTargets(ctx, es, alias)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return nil, err
	}
	var actions []aliasAction
	for _, o := range old {
		if o != index {
			actions = append(actions, aliasAction{"remove": {"index": o, "alias": alias}})
		}
	}
	actions = append(actions, aliasAction{"add": {"index": index, "alias": alias, "is_write_index": true}})
	body, _ := json.Marshal(map[string]any{"actions": actions})
	res, err := es.Indices.UpdateAliases(bytes.NewReader(body), es.Indices.UpdateAliases.WithContext(ctx))
	if err := check(res, err, "swapping alias "+alias+" to "+index); err != nil {
		return nil, err
	}
	res.Body.Close()
	return old, nil
}

// Refresh makes everything indexed so far searchable.
func Refresh(ctx context.Context, es *elasticsearch.Client, index string) error {
	res, err := es.Indices.Refresh(es.Indices.Refresh.WithIndex(index), es.Indices.Refresh.WithContext(ctx))
	if err := check(res, err, "refreshing "+index); err != nil {
		return err
	}
	res.Body.Close()
	return nil
}

// DeleteIndex deletes one index by name.
func DeleteIndex(ctx context.Context, es *elasticsearch.Client, index string) error {
	res, err := es.Indices.Delete([]string{index}, es.Indices.Delete.WithContext(ctx))
	if err := check(res, err, "deleting index "+index); err != nil {
		return err
	}
	res.Body.Close()
	return nil
}

// Count returns the number of documents in index (after a refresh).
func Count(ctx context.Context, es *elasticsearch.Client, index string) (int64, error) {
	res, err := es.Count(es.Count.WithIndex(index), es.Count.WithContext(ctx))
	if err := check(res, err, "counting "+index); err != nil {
		return 0, err
	}
	defer res.Body.Close()
	var c struct {
		Count int64 `json:"count"`
	}
	if err := json.NewDecoder(res.Body).Decode(&c); err != nil {
		return 0, fmt.Errorf("decoding count: %w", err)
	}
	return c.Count, nil
}

// Hit is one document returned by MGet.
type Hit struct {
	Version int64 // _version: the external (aggregate) version
	Source  json.RawMessage
	// Ref names the stored document (index, sequence number and primary
	// term) for a delete that must not remove a newer write.
	Ref DocRef
}

// MGet returns the current documents of ids in index (an alias with one
// target works); missing ids are absent from the map.
func MGet(ctx context.Context, es *elasticsearch.Client, index string, ids []string) (map[string]Hit, error) {
	out := make(map[string]Hit, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	body, _ := json.Marshal(map[string][]string{"ids": ids})
	res, err := es.Mget(bytes.NewReader(body), es.Mget.WithIndex(index), es.Mget.WithContext(ctx), es.Mget.WithRealtime(true))
	if err := check(res, err, "mget "+index); err != nil {
		return nil, err
	}
	defer res.Body.Close()
	var r struct {
		Docs []struct {
			Index       string          `json:"_index"`
			ID          string          `json:"_id"`
			Found       bool            `json:"found"`
			Version     int64           `json:"_version"`
			SeqNo       int64           `json:"_seq_no"`
			PrimaryTerm int64           `json:"_primary_term"`
			Source      json.RawMessage `json:"_source"`
			Error       json.RawMessage `json:"error"`
		} `json:"docs"`
	}
	if err := json.NewDecoder(res.Body).Decode(&r); err != nil {
		return nil, fmt.Errorf("%w: decoding mget response: %w", ErrUnavailable, err)
	}
	for _, d := range r.Docs {
		if len(d.Error) > 0 {
			return nil, fmt.Errorf("%w: mget %s/%s: %s", ErrUnavailable, index, d.ID, d.Error)
		}
		if d.Found {
			out[d.ID] = Hit{Version: d.Version, Source: d.Source,
				Ref: DocRef{Index: d.Index, ID: d.ID, Version: d.Version, SeqNo: d.SeqNo, PrimaryTerm: d.PrimaryTerm}}
		}
	}
	return out, nil
}

// Op is one versioned index operation of a bulk request.
type Op struct {
	Index   string
	ID      string
	Version int64 // external version: the aggregate version of the document
	Doc     []byte
	// AllowEqual writes over a stored document of the same version too
	// (version_type=external_gte), never over a newer one: for a repair
	// that replaces a document whose content is wrong at its version.
	AllowEqual bool
}

// Result is the outcome of one bulk item.
type Result struct {
	Status int
	// Conflict: Elasticsearch holds this version or a newer one already.
	Conflict bool
	Err      string
}

// Rejected reports whether the item failed for good: Elasticsearch refused
// this document (a mapping rejection, an id or a term too long, …), so
// writing it again fails again. A conflict is not a rejection.
func (r Result) Rejected() bool {
	return r.Err != "" && !r.Conflict && Permanent(r.Status)
}

// MaxBulkBytes bounds one _bulk request body. Elasticsearch rejects
// requests above its indexing-pressure limit (10% of the heap) with 429
// forever, so larger op lists are split into several requests.
const MaxBulkBytes = 8 << 20

// BulkConcurrency is how many _bulk requests of one Bulk call are in
// flight at once. One request is indexed by one write thread per shard;
// two keep Elasticsearch's write pool busy on a small machine without
// piling up its queue. minChunkBytes keeps small writes in one request.
const (
	BulkConcurrency = 2
	minChunkBytes   = 1 << 20
)

// Bulk indexes ops with version_type=external and returns one result per
// op, in order. A whole-request failure wraps ErrUnavailable when retryable.
// Ops are sent in requests of at most MaxBulkBytes, BulkConcurrency at a
// time when there is enough to split; if an id repeats, the requests go
// one after the other so the repeats are applied in order.
func Bulk(ctx context.Context, es *elasticsearch.Client, ops []Op, refresh string) ([]Result, error) {
	total := 0
	ids := make(map[string]struct{}, len(ops))
	for _, op := range ops {
		total += len(op.Doc) + 200
		ids[op.Index+"\x00"+op.ID] = struct{}{}
	}
	limit, inFlight := MaxBulkBytes, 1
	if len(ids) == len(ops) { // no id repeats: requests may overlap
		limit = min(MaxBulkBytes, max(minChunkBytes, (total+BulkConcurrency-1)/BulkConcurrency))
		inFlight = BulkConcurrency
	}
	type chunk struct{ start, end int }
	var chunks []chunk
	for start := 0; start < len(ops); {
		end, size := start, 0
		for end < len(ops) && (end == start || size+len(ops[end].Doc)+200 <= limit) {
			size += len(ops[end].Doc) + 200
			end++
		}
		chunks = append(chunks, chunk{start, end})
		start = end
	}
	out := make([]Result, len(ops))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(inFlight)
	for _, c := range chunks {
		g.Go(func() error {
			res, err := bulk(gctx, es, ops[c.start:c.end], refresh)
			if err != nil {
				return err
			}
			copy(out[c.start:c.end], res)
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return out, nil
}

func bulk(ctx context.Context, es *elasticsearch.Client, ops []Op, refresh string) ([]Result, error) {
	if len(ops) == 0 {
		return nil, nil
	}
	var buf bytes.Buffer
	buf.Grow(len(ops) * 400)
	for _, op := range ops {
		meta := struct {
			Index struct {
				Index       string `json:"_index"`
				ID          string `json:"_id"`
				Version     int64  `json:"version"`
				VersionType string `json:"version_type"`
			} `json:"index"`
		}{}
		meta.Index.Index, meta.Index.ID, meta.Index.Version, meta.Index.VersionType = op.Index, op.ID, op.Version, "external"
		if op.AllowEqual {
			meta.Index.VersionType = "external_gte"
		}
		b, _ := json.Marshal(meta)
		buf.Write(b)
		buf.WriteByte('\n')
		buf.Write(op.Doc)
		buf.WriteByte('\n')
	}
	// Only what is read back: items' status and error, not their
	// _index/_id/_version/_shards/_seq_no (most of the response).
	opts := []func(*esapi.BulkRequest){es.Bulk.WithContext(ctx), es.Bulk.WithFilterPath("errors", "items.*.status", "items.*.error")}
	if refresh != "" {
		opts = append(opts, es.Bulk.WithRefresh(refresh))
	}
	res, err := es.Bulk(&buf, opts...)
	if err := check(res, err, "bulk"); err != nil {
		return nil, err
	}
	defer res.Body.Close()
	var r struct {
		Items []map[string]struct {
			Status int             `json:"status"`
			Error  json.RawMessage `json:"error"`
		} `json:"items"`
	}
	if err := json.NewDecoder(res.Body).Decode(&r); err != nil {
		return nil, fmt.Errorf("%w: decoding bulk response: %w", ErrUnavailable, err)
	}
	if len(r.Items) != len(ops) {
		return nil, fmt.Errorf("%w: bulk returned %d items for %d ops", ErrUnavailable, len(r.Items), len(ops))
	}
	out := make([]Result, len(ops))
	for i, it := range r.Items {
		item := it["index"]
		out[i] = Result{Status: item.Status, Conflict: item.Status == http.StatusConflict}
		if item.Status >= 300 && item.Status != http.StatusConflict {
			out[i].Err = string(item.Error)
		}
	}
	return out, nil
}

// PutMappings adds the fields of body's "mappings" (a create-index body)
// that index (or alias) does not have yet. Elasticsearch only accepts
// additions: a field whose type changed is refused (ErrRejected), and
// takes a rebuild into a new index.
func PutMappings(ctx context.Context, es *elasticsearch.Client, index string, body []byte) error {
	var b struct {
		Mappings json.RawMessage `json:"mappings"`
	}
	if err := json.Unmarshal(body, &b); err != nil || len(b.Mappings) == 0 {
		return fmt.Errorf("putting the mappings of %s: the body has no mappings (%v)", index, err)
	}
	res, err := es.Indices.PutMapping([]string{index}, bytes.NewReader(b.Mappings), es.Indices.PutMapping.WithContext(ctx))
	if err := check(res, err, "putting the mappings of "+index); err != nil {
		return err
	}
	res.Body.Close()
	return nil
}
