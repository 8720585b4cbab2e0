package checker

import (
	"encoding/json"
	"fmt"
	"math/big"
	"strconv"
	"strings"
	"time"
)

// doc is a read-model document of either projection (the fields of the
// other one stay zero). The checker folds it from the store's events on
// its own, from the README's rules, instead of calling the projection it
// checks.
type doc struct {
	ID          string    `json:"id"`
	Version     int64     `json:"version"`
	Deleted     bool      `json:"deleted"`
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
	LastEventID string    `json:"last_event_id"`
	RecordedAt  time.Time `json:"recorded_at"`
	Name        string    `json:"name"`
	Description string    `json:"description"`
	Price       float64   `json:"price"`
	Currency    string    `json:"currency"`
	Stock       int64     `json:"stock"`
	UserID      string    `json:"user_id"`
	ProductID   string    `json:"product_id"`
	Quantity    int64     `json:"quantity"`
	TotalPrice  float64   `json:"total_price"`
	Status      string    `json:"status"`
}

// Fields compared for each aggregate type: the stored document, and the
// read API's representation of it.
var (
	productDocFields  = []string{"id", "version", "deleted", "created_at", "updated_at", "last_event_id", "recorded_at", "name", "description", "price", "currency", "stock"}
	orderDocFields    = []string{"id", "version", "deleted", "created_at", "updated_at", "last_event_id", "recorded_at", "user_id", "product_id", "quantity", "total_price", "status"}
	productReadFields = []string{"id", "version", "created_at", "updated_at", "name", "description", "price", "currency", "stock"}
	orderReadFields   = []string{"id", "version", "created_at", "updated_at", "user_id", "product_id", "quantity", "total_price", "status"}
)

var statusOf = map[string]string{"OrderCreated": "created", "OrderPaid": "paid", "OrderShipped": "shipped", "OrderCancelled": "cancelled"}

// fold folds an aggregate's events (in version order) into its document.
func fold(evs []Event) (doc, error) {
	var d doc
	for i, e := range evs {
		if i == 0 {
			d.ID, d.CreatedAt = e.AggregateID, e.OccurredAt.UTC()
		}
		switch e.Type {
		case "ProductCreated", "ProductUpdated":
			if d.Deleted {
				break // a deleted product stays deleted
			}
			var p struct {
				Name        string      `json:"name"`
				Description string      `json:"description"`
				Price       json.Number `json:"price"`
				Currency    string      `json:"currency"`
				Stock       int64       `json:"stock"`
			}
			if err := json.Unmarshal(e.Payload, &p); err != nil {
				return d, fmt.Errorf("%s v%d payload: %w", e.Type, e.Version, err)
			}
			if e.SchemaVersion < 2 {
				p.Currency = defaultCurrency // v1 prices are in euros
			}
			d.Name, d.Description, d.Stock, d.Currency = p.Name, p.Description, p.Stock, p.Currency
			d.Price, _ = p.Price.Float64()
		case "ProductDeleted":
			d.Deleted = true
		case "OrderCreated":
			var p struct {
				UserID     string      `json:"user_id"`
				ProductID  string      `json:"product_id"`
				Quantity   int64       `json:"quantity"`
				TotalPrice json.Number `json:"total_price"`
			}
			if err := json.Unmarshal(e.Payload, &p); err != nil {
				return d, fmt.Errorf("%s v%d payload: %w", e.Type, e.Version, err)
			}
			d.UserID, d.ProductID, d.Quantity = p.UserID, p.ProductID, p.Quantity
			d.TotalPrice, _ = p.TotalPrice.Float64()
			d.Status = "created"
		case "OrderPaid", "OrderShipped", "OrderCancelled":
			d.Status = statusOf[e.Type]
		default:
			return d, fmt.Errorf("unknown event type %s at v%d", e.Type, e.Version)
		}
		d.Version, d.UpdatedAt, d.LastEventID, d.RecordedAt = e.Version, e.OccurredAt.UTC(), e.EventID, e.RecordedAt.UTC()
	}
	return d, nil
}

func (d *doc) field(name string) string {
	t := func(v time.Time) string { return v.UTC().Format(time.RFC3339Nano) }
	f := func(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }
	switch name {
	case "id":
		return d.ID
	case "version":
		return strconv.FormatInt(d.Version, 10)
	case "deleted":
		return strconv.FormatBool(d.Deleted)
	case "created_at":
		return t(d.CreatedAt)
	case "updated_at":
		return t(d.UpdatedAt)
	case "last_event_id":
		return d.LastEventID
	case "recorded_at":
		return t(d.RecordedAt)
	case "name":
		return strconv.Quote(d.Name)
	case "description":
		return strconv.Quote(d.Description)
	case "price":
		return f(d.Price)
	case "currency":
		return d.Currency
	case "stock":
		return strconv.FormatInt(d.Stock, 10)
	case "user_id":
		return d.UserID
	case "product_id":
		return d.ProductID
	case "quantity":
		return strconv.FormatInt(d.Quantity, 10)
	case "total_price":
		return f(d.TotalPrice)
	case "status":
		return d.Status
	}
	return "?" + name
}

// diff lists the fields where got differs from want ("" if none).
func diff(want, got *doc, fields []string) string {
	var out []string
	for _, f := range fields {
		if w, g := want.field(f), got.field(f); w != g {
			out = append(out, fmt.Sprintf("%s: document %s, events %s", f, g, w))
		}
	}
	return strings.Join(out, "; ")
}

// sameJSON reports whether two JSON values are equal, numbers compared by
// value (9.5 = 9.50), after dropping the top-level keys in drop.
func sameJSON(a, b []byte, drop ...string) (bool, error) {
	var va, vb any
	for _, x := range []struct {
		b []byte
		v *any
	}{{a, &va}, {b, &vb}} {
		dec := json.NewDecoder(strings.NewReader(string(x.b)))
		dec.UseNumber()
		if err := dec.Decode(x.v); err != nil {
			return false, err
		}
		if m, ok := (*x.v).(map[string]any); ok {
			for _, k := range drop {
				delete(m, k)
			}
		}
	}
	return equalJSON(va, vb), nil
}

func equalJSON(a, b any) bool {
	switch a := a.(type) {
	case map[string]any:
		bm, ok := b.(map[string]any)
		if !ok || len(a) != len(bm) {
			return false
		}
		for k, v := range a {
			w, ok := bm[k]
			if !ok || !equalJSON(v, w) {
				return false
			}
		}
		return true
	case []any:
		bs, ok := b.([]any)
		if !ok || len(a) != len(bs) {
			return false
		}
		for i := range a {
			if !equalJSON(a[i], bs[i]) {
				return false
			}
		}
		return true
	case json.Number:
		bn, ok := b.(json.Number)
		if !ok {
			return false
		}
		ra, oka := new(big.Rat).SetString(string(a))
		rb, okb := new(big.Rat).SetString(string(bn))
		return oka && okb && ra.Cmp(rb) == 0
	default:
		return a == b
	}
}

func sprintf(format string, args ...any) string { return fmt.Sprintf(format, args...) }

// murmur2 is Kafka's Utils.murmur2 (the Java producer's key hash).
func murmur2(data []byte) int32 {
	const (
		seed uint32 = 0x9747b28c
		m    uint32 = 0x5bd1e995
		r           = 24
	)
	n := len(data)
	h := seed ^ uint32(n)
	for i := 0; i+4 <= n; i += 4 {
		k := uint32(data[i]) | uint32(data[i+1])<<8 | uint32(data[i+2])<<16 | uint32(data[i+3])<<24
		k *= m
		k ^= k >> r
		k *= m
		h *= m
		h ^= k
	}
	tail := n &^ 3
	switch n % 4 {
	case 3:
		h ^= uint32(data[tail+2]) << 16
		fallthrough
	case 2:
		h ^= uint32(data[tail+1]) << 8
		fallthrough
	case 1:
		h ^= uint32(data[tail])
		h *= m
	}
	h ^= h >> 13
	h *= m
	h ^= h >> 15
	return int32(h)
}

// partitionOf is the Java producer's partition of a key.
func partitionOf(key string, partitions int32) int32 {
	return (murmur2([]byte(key)) & 0x7fffffff) % partitions
}
