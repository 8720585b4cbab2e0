package workload

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/url"
	"strconv"
	"time"

	"cqrsflow/chaos/history"
)

// op is one command or query a client sends (and, when keyed and the
// answer is ambiguous, sends again unchanged).
type op struct {
	typ        string
	aggregate  string
	id         string
	method     string
	path       string
	ifMatch    int64 // expected version (0: none)
	inBody     bool  // sent as expected_version in the body, not as If-Match
	body       []byte
	key        string
	misuse     bool
	minVersion int64
	// firstTimeout, when set, is a deliberately short client timeout of
	// the first attempt: the request is abandoned at a random point
	// (before, during or after the commit), the ambiguous case.
	firstTimeout time.Duration
}

// weights of the operation mix (only operations whose preconditions hold
// are drawn).
type weights struct {
	createProduct, updateProduct, deleteProduct     int
	createOrder, transition, readProduct, readOrder int
	searchProducts, misuse                          int
}

var mix = weights{createProduct: 8, updateProduct: 30, deleteProduct: 2, createOrder: 10,
	transition: 25, readProduct: 6, readOrder: 3, searchProducts: 3, misuse: 2}

var words = []string{"lamp", "cup", "chair", "desk", "kettle", "mug", "tasse ☕", "vase", "plate", "stool", "bowl", "fork", "Öl", "tea"}

func productBody(rng *rand.Rand, n int64) map[string]any {
	desc := ""
	for range rng.IntN(6) {
		desc += words[rng.IntN(len(words))] + " "
	}
	return map[string]any{
		"name":        fmt.Sprintf("%s %d", words[rng.IntN(len(words))], n),
		"description": desc,
		"price":       json.Number(fmt.Sprintf("%d.%02d", rng.IntN(1000), rng.IntN(100))),
		"stock":       rng.IntN(1000),
	}
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // maps of strings and numbers always encode
	}
	return b
}

// next draws the client's next operation.
func (c *client) next(seq int64) op {
	rng := c.rng
	live, open := c.m.counts()
	w := mix
	if live >= c.cfg.MaxProducts {
		w.createProduct = 0
	}
	if live == 0 {
		w.createProduct += 50
	}
	if open >= c.cfg.MaxOpenOrders {
		w.createOrder = 0
	}
	total := w.createProduct + w.updateProduct + w.deleteProduct + w.createOrder + w.transition + w.readProduct + w.readOrder + w.searchProducts + w.misuse
	r := rng.IntN(total)
	var o op
	switch {
	case r < w.createProduct:
		o = c.createProduct(seq)
	case r < w.createProduct+w.updateProduct:
		o = c.updateProduct(seq)
	case r < w.createProduct+w.updateProduct+w.deleteProduct:
		o = c.deleteProduct()
	case r < w.createProduct+w.updateProduct+w.deleteProduct+w.createOrder:
		o = c.createOrder()
	case r < total-w.readProduct-w.readOrder-w.searchProducts-w.misuse:
		o = c.transition()
	case r < total-w.readOrder-w.searchProducts-w.misuse:
		o = c.read("product")
	case r < total-w.searchProducts-w.misuse:
		o = c.read("order")
	case r < total-w.misuse:
		o = c.search()
	default:
		o = c.misuseKey()
	}
	if o.typ == "" { // preconditions failed (nothing to update yet…)
		o = c.createProduct(seq)
	}
	if o.method != "GET" && !o.misuse && rng.Float64() < c.cfg.KeyedShare {
		o.key = fmt.Sprintf("%s-k%d", c.cfg.RunID, seq)
	}
	if o.method != "GET" {
		share := 0.03
		if o.key != "" {
			share = 0.2
		}
		if rng.Float64() < share {
			o.firstTimeout = time.Duration(1+rng.IntN(150)) * time.Millisecond
		}
	}
	return o
}

func (c *client) createProduct(seq int64) op {
	return op{typ: history.CreateProduct, aggregate: "product", method: "POST", path: "/v1/products",
		body: mustJSON(productBody(c.rng, seq))}
}

// ifMatch chooses the expected version: the one the client knows (may be
// behind), a deliberately stale one, or none; sent as If-Match or, now
// and then, as expected_version in the body.
func (c *client) ifMatch(o *op, e *entity, body map[string]any) {
	r := c.rng.Float64()
	switch {
	case r < 0.5 && e.version >= 1:
	case r < 0.7 && e.version > 1:
		e = &entity{version: max(1, e.version-1-int64(c.rng.IntN(3)))}
	default:
		return
	}
	o.ifMatch = e.version
	if body != nil && c.rng.Float64() < 0.2 {
		body["expected_version"] = e.version
		o.inBody = true
	}
}

func (c *client) updateProduct(seq int64) op {
	e := c.m.pick(c.rng, "product", 0.9)
	if e == nil {
		return op{}
	}
	body := productBody(c.rng, seq)
	o := op{typ: history.UpdateProduct, aggregate: "product", id: e.id, method: "PUT", path: "/v1/products/" + e.id}
	c.ifMatch(&o, e, body)
	o.body = mustJSON(body)
	return o
}

func (c *client) deleteProduct() op {
	e := c.m.pick(c.rng, "product", 0.9)
	if e == nil {
		return op{}
	}
	body := map[string]any{}
	if c.rng.IntN(2) == 0 {
		body["reason"] = "chaos"
	}
	o := op{typ: history.DeleteProduct, aggregate: "product", id: e.id, method: "DELETE", path: "/v1/products/" + e.id}
	c.ifMatch(&o, e, body)
	o.body = mustJSON(body)
	return o
}

func (c *client) createOrder() op {
	productID := fmt.Sprintf("external-%d", c.rng.IntN(50))
	if e := c.m.pick(c.rng, "product", 0.8); e != nil && c.rng.IntN(10) > 0 {
		productID = e.id
	}
	q := 1 + c.rng.IntN(5)
	body := map[string]any{
		"user_id":     fmt.Sprintf("user-%d", c.rng.IntN(20)),
		"product_id":  productID,
		"quantity":    q,
		"total_price": json.Number(fmt.Sprintf("%d.%02d", q*c.rng.IntN(300), c.rng.IntN(100))),
	}
	path := "/v1/orders"
	if c.rng.IntN(10) == 0 {
		path = "/api/commands/order/create" // the seed tutorial's route (202)
	}
	return op{typ: history.CreateOrder, aggregate: "order", method: "POST", path: path, body: mustJSON(body)}
}

// transition mostly sends the legal next step of the order as the client
// knows it, sometimes any action (illegal ones must be refused with 422).
func (c *client) transition() op {
	e := c.m.pick(c.rng, "order", 0.85)
	if e == nil {
		return op{}
	}
	actions := []string{"pay", "ship", "cancel"}
	action := actions[c.rng.IntN(3)]
	if c.rng.Float64() < 0.7 {
		switch e.status {
		case "created":
			action = []string{"pay", "pay", "cancel"}[c.rng.IntN(3)]
		case "paid":
			action = []string{"ship", "ship", "cancel"}[c.rng.IntN(3)]
		}
	}
	typ := map[string]string{"pay": history.PayOrder, "ship": history.ShipOrder, "cancel": history.CancelOrder}[action]
	field := map[string]string{"pay": "payment_reference", "ship": "tracking_number", "cancel": "reason"}[action]
	body := map[string]any{}
	if c.rng.IntN(2) == 0 {
		body[field] = fmt.Sprintf("%s-%d", action, c.rng.IntN(1_000_000))
	}
	o := op{typ: typ, aggregate: "order", id: e.id, method: "POST", path: "/v1/orders/" + e.id + "/" + action}
	c.ifMatch(&o, e, body)
	o.body = mustJSON(body)
	return o
}

func (c *client) read(aggregate string) op {
	e := c.m.pick(c.rng, aggregate, 0.9)
	if e == nil {
		return op{}
	}
	if aggregate == "order" {
		return op{typ: history.ReadOrder, aggregate: "order", id: e.id, method: "GET", path: "/v1/orders/" + e.id}
	}
	q := url.Values{"min_version": {strconv.FormatInt(max(e.version, 1), 10)}, "wait": {"1s"}}
	return op{typ: history.ReadProduct, aggregate: "product", id: e.id, method: "GET", minVersion: max(e.version, 1),
		path: "/v1/products/" + e.id + "?" + q.Encode()}
}

// searchLimit keeps a search's answer (5 products of at most ~400 bytes)
// under the 4 KiB of an answer the history keeps.
const searchLimit = 5

// search asks the product search for one of the words names and
// descriptions are made of; the checker holds every product it returns
// to the store's fold at the product's version.
func (c *client) search() op {
	q := url.Values{"q": {words[c.rng.IntN(len(words))]}, "limit": {strconv.Itoa(searchLimit)}}
	return op{typ: history.SearchProducts, aggregate: "product", method: "GET", path: "/v1/products/search?" + q.Encode()}
}

// misuseKey sends a different request with the key of an acknowledged
// keyed write: the API must refuse it (422 idempotency_key_reused) and
// append nothing.
func (c *client) misuseKey() op {
	k, ok := c.m.pickAcked(c.rng)
	if !ok {
		return op{}
	}
	o := c.createProduct(-1)
	if k.method == "POST" && k.path == "/v1/products" {
		o = c.createOrder()
	}
	o.key, o.misuse = k.key, true
	return o
}
