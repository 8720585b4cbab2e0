package catalog

import (
	"strings"
	"testing"
)

func TestCatalogLookups(t *testing.T) {
	if got := strings.Join(AggregateTypes(), ","); got != "product,order" {
		t.Fatalf("AggregateTypes() = %q", got)
	}
	if got := strings.Join(ProjectionNames(), ","); got != "orders,products" {
		t.Fatalf("ProjectionNames() = %q", got)
	}
	p, err := Projection("orders")
	if err != nil || p.Name() != "orders" || p.AggregateType() != "order" {
		t.Fatalf("Projection(orders) = %v, %v", p, err)
	}
	for _, bad := range []string{"", "order", "Products", "products ", strings.Repeat("x", 10000)} {
		if _, err := Projection(bad); err == nil || !strings.Contains(err.Error(), "is not one of orders, products") {
			t.Errorf("Projection(%.20q): %v, want an error listing the projections", bad, err)
		}
	}
	// Each entry: its commands, then its read routes.
	if n := len(Modules(nil)); n != 4 {
		t.Fatalf("Modules: %d, want 4", n)
	}
}
