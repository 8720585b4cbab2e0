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
