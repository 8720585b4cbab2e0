package esindex

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"

	"github.com/elastic/go-elasticsearch/v8"
	"github.com/elastic/go-elasticsearch/v8/esapi"
)

// DocRef is a stored document as a search saw it: enough to read it
// again or to delete it only if nobody changed it since.
type DocRef struct {
	Index       string
	ID          string
	Version     int64
	SeqNo       int64
	PrimaryTerm int64
}

type searchHits struct {
	PitID string `json:"pit_id"`
	Hits  struct {
		Hits []struct {
			Index       string `json:"_index"`
			ID          string `json:"_id"`
			Version     int64  `json:"_version"`
			SeqNo       int64  `json:"_seq_no"`
			PrimaryTerm int64  `json:"_primary_term"`
			Sort        []any  `json:"sort"`
		} `json:"hits"`
	} `json:"hits"`
}

func (h *searchHits) refs() []DocRef {
	out := make([]DocRef, len(h.Hits.Hits))
	for i, x := range h.Hits.Hits {
		out[i] = DocRef{Index: x.Index, ID: x.ID, Version: x.Version, SeqNo: x.SeqNo, PrimaryTerm: x.PrimaryTerm}
	}
	return out
}

func search(ctx context.Context, es *elasticsearch.Client, index string, body map[string]any) (*searchHits, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return nil, fmt.Errorf("encoding search: %w", err)
	}
	opts := []func(*esapi.SearchRequest){es.Search.WithContext(ctx), es.Search.WithBody(bytes.NewReader(b))}
	if index != "" {
		opts = append(opts, es.Search.WithIndex(index))
	}
	res, err := es.Search(opts...)
	if err := check(res, err, "search "+index); err != nil {
		return nil, err
	}
	defer res.Body.Close()
	var h searchHits
	if err := json.NewDecoder(res.Body).Decode(&h); err != nil {
		return nil, fmt.Errorf("%w: decoding search response: %w", ErrUnavailable, err)
	}
	return &h, nil
}

// Scan pages through the documents of index (an alias works) that match
// query (nil: every document), pageSize at a time, without their
// sources. It holds a point in time, so the pages are one consistent view
// whatever is written meanwhile, and walks it in _shard_doc order with
// search_after: memory is one page, however large the index.
func Scan(ctx context.Context, es *elasticsearch.Client, index string, query map[string]any, pageSize int, fn func([]DocRef) error) error {
	res, err := es.OpenPointInTime([]string{index}, "2m", es.OpenPointInTime.WithContext(ctx))
	if err := check(res, err, "opening a point in time on "+index); err != nil {
		return err
	}
	var pit struct {
		ID string `json:"id"`
	}
	err = json.NewDecoder(res.Body).Decode(&pit)
	res.Body.Close()
	if err != nil {
		return fmt.Errorf("%w: decoding point in time: %w", ErrUnavailable, err)
	}
	defer func() {
		b, _ := json.Marshal(map[string]string{"id": pit.ID})
		if res, err := es.ClosePointInTime(es.ClosePointInTime.WithBody(bytes.NewReader(b)),
			es.ClosePointInTime.WithContext(context.WithoutCancel(ctx))); err == nil {
			res.Body.Close()
		}
	}()
	if query == nil {
		query = map[string]any{"match_all": map[string]any{}}
	}
	var after []any
	for {
		body := map[string]any{"size": pageSize, "query": query, "_source": false, "version": true,
			"seq_no_primary_term": true, "track_total_hits": false,
			"pit": map[string]any{"id": pit.ID, "keep_alive": "2m"}, "sort": []any{map[string]any{"_shard_doc": "asc"}}}
		if after != nil {
			body["search_after"] = after
		}
		h, err := search(ctx, es, "", body)
		if err != nil {
			return err
		}
		if h.PitID != "" {
			pit.ID = h.PitID
		}
		if len(h.Hits.Hits) == 0 {
			return nil
		}
		if err := fn(h.refs()); err != nil {
			return err
		}
		after = h.Hits.Hits[len(h.Hits.Hits)-1].Sort
	}
}

// MaxSample is the most documents Sample returns (Elasticsearch's
// index.max_result_window).
const MaxSample = 10000

// Sample returns up to n (at most MaxSample) documents of index picked at
// random, without their sources.
func Sample(ctx context.Context, es *elasticsearch.Client, index string, n int) ([]DocRef, error) {
	h, err := search(ctx, es, index, map[string]any{"size": min(n, MaxSample), "_source": false, "version": true,
		"seq_no_primary_term": true, "track_total_hits": false,
		"query": map[string]any{"function_score": map[string]any{"random_score": map[string]any{}}}})
	if err != nil {
		return nil, err
	}
	return h.refs(), nil
}

// DeleteIfUnchanged deletes the document ref names only if it is still
// the one ref saw (same sequence number and primary term). false: it
// changed or is gone, and nothing was deleted.
func DeleteIfUnchanged(ctx context.Context, es *elasticsearch.Client, ref DocRef) (bool, error) {
	res, err := es.Delete(ref.Index, ref.ID, es.Delete.WithContext(ctx),
		es.Delete.WithIfSeqNo(int(ref.SeqNo)), es.Delete.WithIfPrimaryTerm(int(ref.PrimaryTerm)))
	if err != nil {
		return false, fmt.Errorf("%w: deleting %s/%s: %w", ErrUnavailable, ref.Index, ref.ID, err)
	}
	defer res.Body.Close()
	switch res.StatusCode {
	case http.StatusConflict, http.StatusNotFound:
		return false, nil
	}
	if err := check(res, nil, "deleting "+ref.Index+"/"+ref.ID+" at seq_no "+strconv.FormatInt(ref.SeqNo, 10)); err != nil {
		return false, err
	}
	return true, nil
}
