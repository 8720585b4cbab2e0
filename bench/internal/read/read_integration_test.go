//go:build integration

package read

import (
	"context"
	"testing"
	"time"

	"cqrsflow/internal/testenv"
)

// TestSetupAndCheck runs the part's set-up on the real stack (the index
// filled with documents as the current products projection writes them,
// the api built and started on it) and its fairness check of every
// route: the api, Elasticsearch and the floor (the hop forwarding the
// direct requests) must give the same answers. A change
// of the events' schema that the prefill does not follow fails here, not
// in the middle of `make bench`.
func TestSetupAndCheck(t *testing.T) {
	s, err := parseSettings([]string{"-products", "120", "-elasticsearch-url", testenv.ElasticsearchURL(),
		"-postgres-url", testenv.PostgresURL()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	b, err := setup(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	defer b.cleanup()
	if len(b.ids) != 120 {
		t.Fatalf("%d products prefilled, want 120", len(b.ids))
	}
	if b.hop == nil {
		t.Fatal("the floor (hop) was not started; -hop is on by default")
	}
	for _, name := range routeNames {
		if err := b.check(ctx, b.route(name)); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	// The api batches gets by default: after the check's gets its
	// histogram of reads per _mget has them, and none for searches
	// (not batched by default).
	get, err := b.batches(ctx, b.route("get"), nil)
	if err != nil || get.Count < 1 || get.Sum < get.Count {
		t.Errorf("api get batches: %+v, %v; want at least one request with its reads", get, err)
	}
	if search, err := b.batches(ctx, b.route("search"), nil); err != nil || search.Count != 0 {
		t.Errorf("api search batches: %+v, %v; want none (READ_BATCH_SEARCHES is off)", search, err)
	}
}
