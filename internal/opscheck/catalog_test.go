package opscheck

import (
	"strings"
	"testing"

	"cqrsflow/internal/catalog"
)

// The relay creates the topics of AGGREGATE_TYPES at start; its default
// must be every aggregate type of the catalog, so registering one there
// is enough (docs/extending.md).
func TestRelayDefaultAggregateTypesAreTheCatalogs(t *testing.T) {
	got := binaryEnv(t, "outbox-relay")["AGGREGATE_TYPES"]
	if want := strings.Join(catalog.AggregateTypes(), ","); got != want {
		t.Fatalf("outbox-relay's AGGREGATE_TYPES default is %q, internal/catalog registers %q: update the default in outbox-relay/config.go", got, want)
	}
}
