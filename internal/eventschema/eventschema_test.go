package eventschema

import (
	"errors"
	"strings"
	"testing"
)

func TestEmbeddedSchemas(t *testing.T) {
	r, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	want := "order/OrderCancelled.v1 order/OrderCreated.v1 order/OrderPaid.v1 order/OrderShipped.v1 " +
		"product/ProductCreated.v1 product/ProductDeleted.v1 product/ProductUpdated.v1"
	if got := strings.Join(r.Known(), " "); got != want {
		t.Fatalf("schemas: %s\nwant %s", got, want)
	}
}

func TestValidate(t *testing.T) {
	r, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		agg, ev string
		payload string
		field   string // "" = valid
	}{
		{"product", "ProductCreated", `{"name":"a","description":"","price":19.99,"stock":0}`, ""},
		{"product", "ProductUpdated", `{"name":"a","description":"d","price":0,"stock":5}`, ""},
		{"product", "ProductCreated", `{"name":"","description":"","price":1,"stock":0}`, "/name"},
		{"product", "ProductCreated", `{"name":"a","description":"","price":1.999,"stock":0}`, "/price"},
		{"product", "ProductCreated", `{"name":"a","description":"","price":-1,"stock":0}`, "/price"},
		{"product", "ProductCreated", `{"name":"a","description":"","price":1,"stock":1.5}`, "/stock"},
		{"product", "ProductCreated", `{"name":"a","description":"","price":1,"stock":0,"x":1}`, "/"},
		{"product", "ProductCreated", `{"name":"a","price":1,"stock":0}`, "/"},
		{"product", "ProductDeleted", `{}`, ""},
		{"product", "ProductDeleted", `{"reason":5}`, "/reason"},
		{"order", "OrderCreated", `{"user_id":"u","product_id":"p","quantity":1,"total_price":0.1}`, ""},
		{"order", "OrderCreated", `{"user_id":"u","product_id":"p","quantity":0,"total_price":0.1}`, "/quantity"},
		{"order", "OrderPaid", `{}`, ""},
		{"order", "OrderShipped", `{"tracking_number":"x"}`, ""},
		{"order", "OrderCancelled", `{"why":"x"}`, "/"},
		{"order", "OrderPaid", `[]`, "/"},
	}
	for _, c := range cases {
		err := r.Validate(c.agg, c.ev, 1, []byte(c.payload))
		if c.field == "" {
			if err != nil {
				t.Errorf("%s %s: unexpected %v", c.ev, c.payload, err)
			}
			continue
		}
		var ie *InvalidError
		if !errors.As(err, &ie) || !errors.Is(err, ErrInvalid) {
			t.Errorf("%s %s: got %v, want InvalidError", c.ev, c.payload, err)
			continue
		}
		if ie.Violations[0].Field != c.field {
			t.Errorf("%s %s: violation at %s, want %s (%v)", c.ev, c.payload, ie.Violations[0].Field, c.field, ie)
		}
	}
	if err := r.Validate("product", "ProductCreated", 2, []byte(`{}`)); !errors.Is(err, ErrUnknown) {
		t.Errorf("unknown version: %v", err)
	}
}
