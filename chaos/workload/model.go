package workload

import (
	"encoding/json"
	"math/rand/v2"
	"strings"
	"sync"

	"cqrsflow/chaos/history"
)

// entity is what the clients believe about one aggregate: the highest
// version an answer showed and the last state they saw. It may be behind
// the store (another client wrote since), which is what makes If-Match
// conflicts happen naturally.
type entity struct {
	id      string
	version int64
	deleted bool   // products: a delete was acknowledged or refused as deleted
	status  string // orders: last status seen
}

// keyed is an acknowledged keyed write, for reusing its key with another
// request (which must be refused).
type keyed struct {
	key    string
	method string
	path   string
}

// model is the clients' shared, bounded view of the aggregates.
type model struct {
	mu       sync.Mutex
	products []*entity
	orders   []*entity
	byID     map[string]*entity
	acked    []keyed
}

func newModel() *model { return &model{byID: map[string]*entity{}} }

func (m *model) counts() (liveProducts, openOrders int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, p := range m.products {
		if !p.deleted {
			liveProducts++
		}
	}
	for _, o := range m.orders {
		if o.status != "shipped" && o.status != "cancelled" {
			openOrders++
		}
	}
	return liveProducts, openOrders
}

// pick returns a copy of a random product or order (nil if none), live
// ones preferred so most commands can succeed.
func (m *model) pick(rng *rand.Rand, aggregate string, preferLive float64) *entity {
	m.mu.Lock()
	defer m.mu.Unlock()
	all := m.products
	if aggregate == "order" {
		all = m.orders
	}
	if len(all) == 0 {
		return nil
	}
	if rng.Float64() < preferLive {
		var live []*entity
		for _, e := range all {
			if !e.deleted && e.status != "shipped" && e.status != "cancelled" {
				live = append(live, e)
			}
		}
		if len(live) > 0 {
			c := *live[rng.IntN(len(live))]
			return &c
		}
	}
	c := *all[rng.IntN(len(all))]
	return &c
}

func (m *model) pickAcked(rng *rand.Rand) (keyed, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.acked) == 0 {
		return keyed{}, false
	}
	return m.acked[rng.IntN(len(m.acked))], true
}

// learn updates the model from one answered attempt.
func (m *model) learn(a *history.Attempt) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if ack, ok := a.Ack(); ok {
		e := m.byID[ack.ID]
		if e == nil {
			e = &entity{id: ack.ID}
			m.byID[ack.ID] = e
			if a.Aggregate == "product" {
				m.products = append(m.products, e)
			} else {
				m.orders = append(m.orders, e)
			}
		}
		e.version = max(e.version, ack.Version)
		switch a.Type {
		case history.CreateOrder:
			if e.status == "" {
				e.status = "created"
			}
		case history.DeleteProduct:
			e.deleted = true
		case history.PayOrder:
			e.status = "paid"
		case history.ShipOrder:
			e.status = "shipped"
		case history.CancelOrder:
			e.status = "cancelled"
		}
		if a.IdemKey != "" && !a.Misuse && len(m.acked) < 1000 {
			m.acked = append(m.acked, keyed{key: a.IdemKey, method: a.Method, path: a.Path})
		}
		return
	}
	e := m.byID[a.ID]
	if e == nil {
		return
	}
	switch a.Status {
	case 409:
		var body struct {
			Error struct {
				Details struct {
					Current int64 `json:"current_version"`
				} `json:"details"`
			} `json:"error"`
		}
		if json.Unmarshal(a.Resp, &body) == nil {
			e.version = max(e.version, body.Error.Details.Current)
		}
	case 422:
		switch a.ErrorCode() {
		case "product_deleted":
			e.deleted = true
		case "illegal_transition":
			// "cannot pay an order that is shipped"
			var body struct {
				Error struct {
					Message string `json:"message"`
				} `json:"error"`
			}
			if json.Unmarshal(a.Resp, &body) == nil {
				if i := strings.LastIndex(body.Error.Message, " that is "); i >= 0 {
					e.status = body.Error.Message[i+len(" that is "):]
				}
			}
		}
	case 200:
		if a.Type == history.ReadProduct || a.Type == history.ReadOrder {
			var doc struct {
				Version int64  `json:"version"`
				Status  string `json:"status"`
			}
			if json.Unmarshal(a.Resp, &doc) == nil && doc.Version > e.version {
				e.version = doc.Version
				if doc.Status != "" {
					e.status = doc.Status
				}
			}
		}
	}
}
