package query

import "strconv"

// The _search request bodies of the list and search routes. They are
// appended to a byte slice rather than marshalled from nested maps: a
// search is the api's hottest read, and the map form cost a dozen
// allocations and a reflective, key-sorting encode per request. The bytes
// are what encoding/json makes of the equivalent map (keys sorted, HTML
// characters escaped), which the tests hold them to. User text (q,
// user_id) is only ever appended as an escaped JSON string value
// (appendString, encode.go).

const notDeletedJSON = `[{"term":{"deleted":true}}]`

// sortJSON is the sort clause of each product search sort; the id breaks
// ties so pages are stable.
var sortJSON = map[string]string{
	"":       `[{"_score":"desc"},{"id":"asc"}]`,
	"price":  `[{"price":"asc"},{"id":"asc"}]`,
	"-price": `[{"price":"desc"},{"id":"asc"}]`,
	"name":   `[{"name.sort":"asc"},{"id":"asc"}]`,
	"-name":  `[{"name.sort":"desc"},{"id":"asc"}]`,
}

// ProductSearchBody is the _search body GET /v1/products/search sends
// for p (validated by ParseSearch).
func ProductSearchBody(p SearchParams) []byte {
	b := make([]byte, 0, 320+len(p.Q))
	b = appendFrom(b, p.Paging)
	b = append(b, `"query":{"bool":{"filter":[`...)
	if p.MinPrice != nil || p.MaxPrice != nil {
		b = append(b, `{"range":{"price":{`...)
		if p.MinPrice != nil {
			b = append(b, `"gte":`...)
			b = appendFloat(b, *p.MinPrice)
		}
		if p.MaxPrice != nil {
			if p.MinPrice != nil {
				b = append(b, ',')
			}
			b = append(b, `"lte":`...)
			b = appendFloat(b, *p.MaxPrice)
		}
		b = append(b, `}}}`...)
		if p.InStock {
			b = append(b, ',')
		}
	}
	if p.InStock {
		b = append(b, `{"range":{"stock":{"gt":0}}}`...)
	}
	b = append(b, `],"must":[{"multi_match":{"fields":["name^2","description"],"query":`...)
	b = appendString(b, p.Q)
	b = append(b, `}}],"must_not":`+notDeletedJSON+`}},`...)
	return appendTail(b, p.Paging, sortJSON[p.Sort])
}

// ProductListBody is the _search body of GET /v1/products: every product
// not deleted, oldest first.
func ProductListBody(pg Paging) []byte { return allDocsBody(pg) }

// allDocsBody is the _search body of a list of every document of a read
// model that is not deleted, oldest first (products and the read models
// served as stored).
func allDocsBody(pg Paging) []byte {
	b := make([]byte, 0, 192)
	b = appendFrom(b, pg)
	b = append(b, `"query":{"bool":{"must_not":`+notDeletedJSON+`}},`...)
	return appendTail(b, pg, `[{"created_at":"asc"},{"id":"asc"}]`)
}

// orderListBody is the _search body of GET /v1/orders: the orders of user
// ("" = every user), of status if set, newest first.
func orderListBody(user, status string, pg Paging) []byte {
	b := make([]byte, 0, 256+len(user))
	b = appendFrom(b, pg)
	b = append(b, `"query":{"bool":{"filter":[`...)
	if user != "" {
		b = append(b, `{"term":{"user_id":`...)
		b = appendString(b, user)
		b = append(b, `}}`...)
		if status != "" {
			b = append(b, ',')
		}
	}
	if status != "" {
		b = append(b, `{"term":{"status":`...)
		b = appendString(b, status)
		b = append(b, `}}`...)
	}
	b = append(b, `],"must_not":`+notDeletedJSON+`}},`...)
	return appendTail(b, pg, `[{"created_at":"desc"},{"id":"asc"}]`)
}

func appendFrom(b []byte, pg Paging) []byte {
	b = append(b, `{"from":`...)
	b = strconv.AppendInt(b, int64((pg.Page-1)*pg.Limit), 10)
	return append(b, ',')
}

func appendTail(b []byte, pg Paging, sort string) []byte {
	b = append(b, `"size":`...)
	b = strconv.AppendInt(b, int64(pg.Limit), 10)
	b = append(b, `,"sort":`...)
	b = append(b, sort...)
	return append(b, `,"track_total_hits":true}`...)
}

// appendFloat appends a price bound (ParseSearch admits only finite
// values, which always encode).
func appendFloat(b []byte, f float64) []byte {
	b, _ = appendFloat64(b, f)
	return b
}
