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
		"product/ProductCreated.v1 product/ProductCreated.v2 product/ProductDeleted.v1 product/ProductUpdated.v1 product/ProductUpdated.v2"
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
		version int // 0: 1
		payload string
		field   string // "" = valid
	}{
		{"product", "ProductCreated", 0, `{"name":"a","description":"","price":19.99,"stock":0}`, ""},
		{"product", "ProductUpdated", 0, `{"name":"a","description":"d","price":0,"stock":5}`, ""},
		{"product", "ProductCreated", 0, `{"name":"","description":"","price":1,"stock":0}`, "/name"},
		{"product", "ProductCreated", 0, `{"name":"a","description":"","price":1.999,"stock":0}`, "/price"},
		{"product", "ProductCreated", 0, `{"name":"a","description":"","price":-1,"stock":0}`, "/price"},
		{"product", "ProductCreated", 0, `{"name":"a","description":"","price":1,"stock":1.5}`, "/stock"},
		{"product", "ProductCreated", 0, `{"name":"a","description":"","price":1,"stock":0,"x":1}`, "/"},
		{"product", "ProductCreated", 0, `{"name":"a","price":1,"stock":0}`, "/"},
		{"product", "ProductCreated", 2, `{"name":"a","description":"","price":19.99,"currency":"USD","stock":0}`, ""},
		{"product", "ProductUpdated", 2, `{"name":"a","description":"","price":19.99,"currency":"EUR","stock":0}`, ""},
		{"product", "ProductUpdated", 2, `{"name":"a","description":"","price":19.99,"stock":0}`, "/"},
		{"product", "ProductUpdated", 2, `{"name":"a","description":"","price":19.99,"currency":"eur","stock":0}`, "/currency"},
		{"product", "ProductUpdated", 2, `{"name":"a","description":"","price":19.99,"currency":"EURO","stock":0}`, "/currency"},
		{"product", "ProductUpdated", 2, `{"name":"a","description":"","price":19.99,"currency":978,"stock":0}`, "/currency"},
		{"product", "ProductUpdated", 1, `{"name":"a","description":"","price":19.99,"currency":"EUR","stock":0}`, "/"},
		{"product", "ProductDeleted", 0, `{}`, ""},
		{"product", "ProductDeleted", 0, `{"reason":5}`, "/reason"},
		{"order", "OrderCreated", 0, `{"user_id":"u","product_id":"p","quantity":1,"total_price":0.1}`, ""},
		{"order", "OrderCreated", 0, `{"user_id":"u","product_id":"p","quantity":0,"total_price":0.1}`, "/quantity"},
		{"order", "OrderPaid", 0, `{}`, ""},
		{"order", "OrderShipped", 0, `{"tracking_number":"x"}`, ""},
		{"order", "OrderCancelled", 0, `{"why":"x"}`, "/"},
		{"order", "OrderPaid", 0, `[]`, "/"},
	}
	for _, c := range cases {
		v := max(c.version, 1)
		err := r.Validate(c.agg, c.ev, v, []byte(c.payload))
		if c.field == "" {
			if err != nil {
				t.Errorf("%s %s: unexpected %v", c.ev, c.payload, err)
			}
			continue
		}
		var ie *InvalidError
		if !errors.As(err, &ie) || !errors.Is(err, ErrInvalid) {
			t.Errorf("%s v%d %s: got %v, want InvalidError", c.ev, v, c.payload, err)
			continue
		}
		if ie.Violations[0].Field != c.field {
			t.Errorf("%s %s: violation at %s, want %s (%v)", c.ev, c.payload, ie.Violations[0].Field, c.field, ie)
		}
	}
	if err := r.Validate("product", "ProductCreated", 3, []byte(`{}`)); !errors.Is(err, ErrUnknown) {
		t.Errorf("unknown version: %v", err)
	}
}
