package esindex_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"cqrsflow/internal/esindex"
)

// An unreachable cluster is ErrUnavailable (retryable), never a panic.
func TestUnavailable(t *testing.T) {
	es, err := esindex.New("http://127.0.0.1:1")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := esindex.Ping(ctx, es); !errors.Is(err, esindex.ErrUnavailable) {
		t.Errorf("ping: %v", err)
	}
	if _, err := esindex.MGet(ctx, es, "x", []string{"a"}); !errors.Is(err, esindex.ErrUnavailable) {
		t.Errorf("mget: %v", err)
	}
	if _, err := esindex.Bulk(ctx, es, []esindex.Op{{Index: "x", ID: "a", Version: 1, Doc: []byte(`{}`)}}, ""); !errors.Is(err, esindex.ErrUnavailable) {
		t.Errorf("bulk: %v", err)
	}
}

// Which answers are worth retrying: only timeouts, back-pressure and
// server errors; a conflict is a result, not a rejection.
func TestPermanentAndRejected(t *testing.T) {
	for status, want := range map[int]bool{400: true, 401: true, 403: true, 404: true, 409: true, 413: true,
		408: false, 429: false, 500: false, 503: false, 200: false, 201: false} {
		if got := esindex.Permanent(status); got != want {
			t.Errorf("Permanent(%d) = %v, want %v", status, got, want)
		}
	}
	for _, tc := range []struct {
		r    esindex.Result
		want bool
	}{
		{esindex.Result{Status: 400, Err: `{"type":"mapper_parsing_exception"}`}, true},
		{esindex.Result{Status: 413, Err: "too large"}, true},
		{esindex.Result{Status: 409, Conflict: true}, false},
		{esindex.Result{Status: 429, Err: "es_rejected_execution_exception"}, false},
		{esindex.Result{Status: 503, Err: "unavailable_shards_exception"}, false},
		{esindex.Result{Status: 201}, false},
	} {
		if got := tc.r.Rejected(); got != tc.want {
			t.Errorf("%+v.Rejected() = %v, want %v", tc.r, got, tc.want)
		}
	}
}

// PutMappings refuses a body without mappings before any request, and an
// unreachable cluster is ErrUnavailable.
func TestPutMappingsInput(t *testing.T) {
	es, err := esindex.New("http://127.0.0.1:1")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, body := range []string{``, `[]`, `{"settings":{}}`, `{"mappings":`} {
		if err := esindex.PutMappings(ctx, es, "i", []byte(body)); err == nil || errors.Is(err, esindex.ErrUnavailable) {
			t.Errorf("PutMappings(%q) = %v, want a refusal of the body", body, err)
		}
	}
	if err := esindex.PutMappings(ctx, es, "i", []byte(`{"mappings":{"properties":{}}}`)); !errors.Is(err, esindex.ErrUnavailable) {
		t.Errorf("unreachable cluster: %v, want ErrUnavailable", err)
	}
}
