package query

import (
	"encoding/json"
	"strings"
	"testing"
)

// The reference bodies: the query DSL as nested maps, which encoding/json
// encodes with sorted keys. The appended bodies must be byte for byte
// what it makes of them.
type obj = map[string]any

var notDeleted = obj{"term": obj{"deleted": true}}

var referenceSorts = map[string][]any{
	"":       {obj{"_score": "desc"}, obj{"id": "asc"}},
	"price":  {obj{"price": "asc"}, obj{"id": "asc"}},
	"-price": {obj{"price": "desc"}, obj{"id": "asc"}},
	"name":   {obj{"name.sort": "asc"}, obj{"id": "asc"}},
	"-name":  {obj{"name.sort": "desc"}, obj{"id": "asc"}},
}

func paged(body obj, pg Paging) obj {
	body["from"] = (pg.Page - 1) * pg.Limit
	body["size"] = pg.Limit
	body["track_total_hits"] = true
	return body
}

func referenceSearchBody(p SearchParams) obj {
	filter := []any{}
	if p.MinPrice != nil || p.MaxPrice != nil {
		r := obj{}
		if p.MinPrice != nil {
			r["gte"] = *p.MinPrice
		}
		if p.MaxPrice != nil {
			r["lte"] = *p.MaxPrice
		}
		filter = append(filter, obj{"range": obj{"price": r}})
	}
	if p.InStock {
		filter = append(filter, obj{"range": obj{"stock": obj{"gt": 0}}})
	}
	return paged(obj{
		"query": obj{"bool": obj{
			"must":     []any{obj{"multi_match": obj{"query": p.Q, "fields": []string{"name^2", "description"}}}},
			"filter":   filter,
			"must_not": []any{notDeleted},
		}},
		"sort": referenceSorts[p.Sort],
	}, p.Paging)
}

func referenceOrderList(user, status string, pg Paging) obj {
	filter := []any{}
	if user != "" {
		filter = append(filter, obj{"term": obj{"user_id": user}})
	}
	if status != "" {
		filter = append(filter, obj{"term": obj{"status": status}})
	}
	return paged(obj{
		"query": obj{"bool": obj{"filter": filter, "must_not": []any{notDeleted}}},
		"sort":  []any{obj{"created_at": "desc"}, obj{"id": "asc"}},
	}, pg)
}

func same(t *testing.T, what string, got []byte, ref obj) {
	t.Helper()
	want, err := json.Marshal(ref)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		t.Errorf("%s:\n got %s\nwant %s", what, got, want)
	}
}

func TestBodiesAreWhatEncodingJSONMakes(t *testing.T) {
	f := func(v float64) *float64 { return &v }
	for _, p := range []SearchParams{
		{Q: "lamp", Paging: Paging{1, 20}},
		{Q: "lamp", Paging: Paging{3, 7}, Sort: "-price", InStock: true},
		{Q: "Ünïcode ☃ lamp", MinPrice: f(0), Paging: Paging{2, 100}, Sort: "name"},
		{Q: `a"b\c<d>&e` + "\x01\t\n\u2028", MaxPrice: f(1e21), Paging: Paging{1, 1}, Sort: "-name"},
		{Q: "x", MinPrice: f(0.000001), MaxPrice: f(123.45), InStock: true, Paging: Paging{10, 10}, Sort: "price"},
		{Q: "bad utf8 \xff\xfe", MinPrice: f(1e-7), Paging: Paging{1, 20}},
	} {
		same(t, "search "+p.Q, ProductSearchBody(p), referenceSearchBody(p))
	}
	for _, pg := range []Paging{{1, 20}, {500, 20}, {1, 100}} {
		same(t, "product list", ProductListBody(pg), paged(obj{
			"query": obj{"bool": obj{"must_not": []any{notDeleted}}},
			"sort":  []any{obj{"created_at": "asc"}, obj{"id": "asc"}},
		}, pg))
	}
	for _, tc := range [][2]string{{"", ""}, {"u1", ""}, {"", "paid"}, {`u"<1>`, "shipped"}, {strings.Repeat("é", 50), "created"}} {
		same(t, "order list "+tc[0]+"/"+tc[1], orderListBody(tc[0], tc[1], Paging{2, 5}), referenceOrderList(tc[0], tc[1], Paging{2, 5}))
	}
}

func BenchmarkProductSearchBody(b *testing.B) {
	p := SearchParams{Q: "item", Paging: Paging{1, 20}}
	b.ReportAllocs()
	for b.Loop() {
		_ = ProductSearchBody(p)
	}
}
