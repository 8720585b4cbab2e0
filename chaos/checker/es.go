package checker

import (
	"encoding/json"
	"strconv"
	"time"

	"cqrsflow/chaos/history"
)

func (x *index) docs(aggType string) map[string]*Doc {
	m := map[string]*Doc{}
	for i := range x.in.Docs[aggType] {
		d := &x.in.Docs[aggType][i]
		m[d.ID] = d
	}
	return m
}

func fieldsFor(aggType string, stored bool) []string {
	switch {
	case aggType == "product" && stored:
		return productDocFields
	case aggType == "product":
		return productReadFields
	case stored:
		return orderDocFields
	}
	return orderReadFields
}

func (x *index) readModel() Result {
	r := Result{ID: "read-model", Desc: "every aggregate of the store (but the oversize faults', never published: relay-dead-letters) has an Elasticsearch document equal to the fold of its events (fields, version, deleted, timestamps), written with its version as the external version"}
	docs := map[string]map[string]*Doc{"product": x.docs("product"), "order": x.docs("order")}
	for id, evs := range x.byAgg {
		if x.oversize[id] != nil {
			continue
		}
		r.Checked++
		typ := evs[0].AggregateType
		want, err := fold(evs)
		if err != nil {
			r.fail(id, evs[len(evs)-1].RecordedAt, "cannot fold the events: %v", err)
			continue
		}
		d := docs[typ][id]
		if d == nil {
			r.fail(id, evs[len(evs)-1].RecordedAt, "no %s document (the store has %d events)", typ, len(evs))
			continue
		}
		var got doc
		if err := json.Unmarshal(d.Source, &got); err != nil {
			r.fail(id, evs[len(evs)-1].RecordedAt, "document does not decode: %v: %s", err, d.Source)
			continue
		}
		if df := diff(&want, &got, fieldsFor(typ, true)); df != "" {
			r.fail(id, evs[len(evs)-1].RecordedAt, "document differs from the fold of its %d events: %s", len(evs), df)
			continue
		}
		if d.ESVersion != got.Version {
			r.fail(id, evs[len(evs)-1].RecordedAt, "_version %d, document version %d", d.ESVersion, got.Version)
		}
	}
	return r
}

func (x *index) noOrphanDoc() Result {
	r := Result{ID: "no-orphan-doc", Desc: "no Elasticsearch document without events in the store"}
	for typ, docs := range x.in.Docs {
		for _, d := range docs {
			r.Checked++
			evs := x.byAgg[d.ID]
			if len(evs) == 0 {
				r.fail(d.ID, time.Time{}, "%s document without events: %s", typ, d.Source)
			} else if evs[0].AggregateType != typ {
				r.fail(d.ID, time.Time{}, "%s document for a %s aggregate", typ, evs[0].AggregateType)
			}
		}
	}
	return r
}

// readDoc checks a document the read API returned: the store has its
// version, it equals the fold up to that version, and it is not deleted
// at it.
func (x *index) readDoc(r *Result, a *history.Attempt, got *doc) {
	evs := x.byAgg[got.ID]
	if got.Version < 1 || got.Version > int64(len(evs)) {
		r.fail(got.ID, a.End, "read op %d returned %s at version %d, the store has %d", a.Op, got.ID, got.Version, len(evs))
		return
	}
	want, err := fold(evs[:got.Version])
	if err != nil {
		return // read-model reports it
	}
	if want.Deleted {
		r.fail(got.ID, a.End, "read op %d returned v%d of a product deleted at or before it", a.Op, got.Version)
	}
	if df := diff(&want, got, fieldsFor(a.Aggregate, false)); df != "" {
		r.fail(got.ID, a.End, "read op %d (v%d) differs from the fold of the store: %s", a.Op, got.Version, df)
	}
}

// searchRead checks a product search's answer: a page of at most the
// limit asked, every product in it checked as a read (readDoc). The
// search is near-real-time, so a product may be at an older version; it
// can never be one the store does not have, or a deleted one.
func (x *index) searchRead(r *Result, a *history.Attempt) {
	switch a.Status {
	case 0, 429, 503:
		return
	case 200:
	default:
		r.Checked++
		r.fail("search", a.End, "search op %d (%s) was answered %d: %s", a.Op, a.Path, a.Status, a.Resp)
		return
	}
	var page struct {
		Items []doc `json:"items"`
		Total *int  `json:"total"`
	}
	r.Checked++
	if err := json.Unmarshal(a.Resp, &page); err != nil || page.Total == nil {
		r.fail("search", a.End, "search op %d: answer is not a page (%v): %.200s", a.Op, err, a.Resp)
		return
	}
	if *page.Total < len(page.Items) {
		r.fail("search", a.End, "search op %d: total %d below the %d items returned", a.Op, *page.Total, len(page.Items))
	}
	for i := range page.Items {
		r.Checked++
		x.readDoc(r, a, &page.Items[i])
	}
}

// reads checks every answered query against the store: a document read
// at version V equals the fold of versions 1..V; a read that did not say
// stale reached the requested min_version; a deleted product reads 404.
func (x *index) reads() Result {
	r := Result{ID: "reads", Desc: "every document the read API returned (gets and searches) equals the fold of the store's events up to its version and is not deleted there; min_version was honoured unless the answer said stale"}
	for i := range x.in.Attempts {
		a := &x.in.Attempts[i]
		if !history.IsRead(a.Type) {
			continue
		}
		if a.Type == history.SearchProducts {
			x.searchRead(&r, a)
			continue
		}
		stale := a.Headers[history.HeaderStale] == "true"
		switch a.Status {
		case 0, 429, 503:
			// Not answered (the api down), too many waits, or the read
			// model unavailable (http-5xx checks when).
		default:
			// The workload authenticates and asks for valid ids: any
			// other refusal means its reads are not reaching the read
			// model, and this invariant would check nothing.
			r.Checked++
			r.fail(a.ID, a.End, "read op %d (%s) was answered %d: %s", a.Op, a.Path, a.Status, a.Resp)
		case 200:
			r.Checked++
			var got doc
			if err := json.Unmarshal(a.Resp, &got); err != nil {
				r.fail(a.ID, a.End, "read op %d: answer does not decode: %v", a.Op, err)
				continue
			}
			if got.ID != a.ID {
				r.fail(a.ID, a.End, "read op %d asked for %s and got %s", a.Op, a.ID, got.ID)
				continue
			}
			x.readDoc(&r, a, &got)
			if a.MinVersion > 0 && !stale && got.Version < a.MinVersion {
				r.fail(a.ID, a.End, "read op %d asked min_version %d, got v%d without %s", a.Op, a.MinVersion, got.Version, history.HeaderStale)
			}
		case 404:
			r.Checked++
			if a.Type != history.ReadProduct || stale {
				continue
			}
			v, err := strconv.ParseInt(a.Headers[history.HeaderModelVersion], 10, 64)
			if err != nil {
				r.fail(a.ID, a.End, "read op %d: 404 for min_version %d without %s and without a read-model version", a.Op, a.MinVersion, history.HeaderStale)
				continue
			}
			evs := x.byAgg[a.ID]
			if v > int64(len(evs)) {
				r.fail(a.ID, a.End, "read op %d: 404 at read-model version %d, the store has %d", a.Op, v, len(evs))
				continue
			}
			if want, err := fold(evs[:v]); err == nil && !want.Deleted {
				r.fail(a.ID, a.End, "read op %d: 404 at read-model version %d, but the product is not deleted at that version", a.Op, v)
			}
		}
	}
	return r
}
