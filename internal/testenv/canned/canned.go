// Package canned answers Elasticsearch requests from memory, for the
// handler benchmarks and unit tests that measure or check the api's own
// work on an answer, not a network or a node. Tests of behaviour against
// Elasticsearch use the real node (internal/testenv).
package canned

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// ES is an http.RoundTripper answering every request 200 with Doc for a
// document request (/_doc/) and Search for anything else.
type ES struct {
	Search, Doc []byte
}

// RoundTrip reads and closes the request body and answers from memory.
func (c ES) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		_, _ = io.Copy(io.Discard, r.Body)
		r.Body.Close()
	}
	body := c.Search
	if strings.Contains(r.URL.Path, "/_doc/") {
		body = c.Doc
	}
	return &http.Response{StatusCode: 200, Request: r, ContentLength: int64(len(body)), Body: io.NopCloser(bytes.NewReader(body)),
		Header: http.Header{"X-Elastic-Product": {"Elasticsearch"}, "Content-Type": {"application/json"}}}, nil
}

// ProductSource is the i-th product document of the canned answers.
func ProductSource(i int) string {
	return fmt.Sprintf(`{"id":"0193a3f0-1c2d-7e4f-8a9b-0c1d2e3f%04x","version":%d,"deleted":false,"created_at":"2026-11-27T16:51:29.275798141Z","updated_at":"2026-11-27T16:51:29.275798141Z","last_event_id":"1f0b42fd-2ac1-485b-b74a-5d53a12319b0","recorded_at":"2026-11-27T16:51:29.283202481Z","name":"Item %d wooden","description":"a wooden item of the read benchmark, number %d, with a few more words to search","price":%d.%02d,"stock":%d}`,
		i, 1+i%5, i, i, i%1000, i%100, i%50)
}

// Products answers a search with a realistic page of 20 product hits of
// index and a document GET with the product docID.
func Products(index, docID string) ES {
	var s strings.Builder
	s.WriteString(`{"took":3,"timed_out":false,"_shards":{"total":1,"successful":1,"skipped":0,"failed":0},"hits":{"total":{"value":10000,"relation":"eq"},"max_score":null,"hits":[`)
	for i := range 20 {
		if i > 0 {
			s.WriteByte(',')
		}
		fmt.Fprintf(&s, `{"_index":%q,"_id":"0193a3f0-1c2d-7e4f-8a9b-0c1d2e3f%04x","_score":0.0952,"_source":%s,"sort":[0.0952,"0193a3f0-1c2d-7e4f-8a9b-0c1d2e3f%04x"]}`,
			index, i, ProductSource(i), i)
	}
	s.WriteString(`]}}`)
	doc := `{"_index":"` + index + `","_id":"` + docID + `","_version":3,"_seq_no":7,"_primary_term":1,"found":true,"_source":` + ProductSource(7) + `}`
	return ES{Search: []byte(s.String()), Doc: []byte(doc)}
}
