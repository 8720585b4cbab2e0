package projector

import (
	"context"
	"fmt"

	"github.com/elastic/go-elasticsearch/v8"

	"cqrsflow/internal/esindex"
)

// RepairStats is what a repair did.
type RepairStats struct {
	// Written documents (the expected one, at its version).
	Written int `json:"written"`
	// Kept: Elasticsearch refused the write because it holds a newer
	// version (409): the projection moved on, or the stored document is
	// ahead of every event (delete it, or rebuild).
	Kept int `json:"kept"`
	// Deleted unexpected documents (--delete-unexpected).
	Deleted int `json:"deleted"`
	// Left: drift repair does not touch (unexpected documents without
	// --delete-unexpected, one deleted or changed meanwhile, events that
	// do not fold).
	Left   int `json:"left"`
	Failed int `json:"failed"`
	// Items are the first repairs, one line each.
	Items []RepairItem `json:"items"`
}

// RepairItem is what a repair did to one aggregate.
type RepairItem struct {
	AggregateID string `json:"aggregate_id"`
	Result      string `json:"result"`
	Action      string `json:"action"`
	Version     int64  `json:"version,omitempty"`
}

// repairBatch is how many documents one repair write carries.
const repairBatch = 500

// repairer writes the expected documents of drifted aggregates through
// the projector's own write path: Store.Bulk with the aggregate version as
// external version, so a document newer than the expected one is never
// overwritten (409: kept). version_type=external_gte, because the
// expected document of a version is the right one at that version: it
// replaces a document whose content is wrong at its own version, and
// still refuses anything older.
type repairer struct {
	store            Store
	es               *elasticsearch.Client
	deleteUnexpected bool
	stats            *RepairStats
	maxItems         int
	pending          []Check
}

func (r *repairer) note(c Check, action string, version int64) {
	if len(r.stats.Items) < r.maxItems {
		r.stats.Items = append(r.stats.Items, RepairItem{AggregateID: c.AggregateID, Result: c.Result, Action: action, Version: version})
	}
}

// add repairs c, batching writes.
func (r *repairer) add(ctx context.Context, c Check) error {
	switch {
	case c.Result == ResultUnexpected:
		return r.unexpected(ctx, c)
	case c.expected == nil:
		r.stats.Left++
		r.note(c, "left: no document can be built from the events", 0)
		return nil
	}
	if r.pending = append(r.pending, c); len(r.pending) >= repairBatch {
		return r.flush(ctx)
	}
	return nil
}

func (r *repairer) unexpected(ctx context.Context, c Check) error {
	if !r.deleteUnexpected || c.ref == nil {
		r.stats.Left++
		r.note(c, "left: delete it with --delete-unexpected", 0)
		return nil
	}
	ok, err := esindex.DeleteIfUnchanged(ctx, r.es, *c.ref)
	if err != nil {
		return fmt.Errorf("deleting unexpected document %s: %w", c.AggregateID, err)
	}
	if !ok {
		r.stats.Left++
		r.note(c, "left: it changed or went since it was read", 0)
		return nil
	}
	r.stats.Deleted++
	r.note(c, "deleted", 0)
	return nil
}

// flush writes the pending documents.
func (r *repairer) flush(ctx context.Context) error {
	if len(r.pending) == 0 {
		return nil
	}
	ops := make([]esindex.Op, len(r.pending))
	for i, c := range r.pending {
		ops[i] = esindex.Op{ID: c.AggregateID, Version: c.ExpectedVersion, Doc: c.expected, AllowEqual: true}
	}
	res, err := r.store.Bulk(ctx, ops)
	if err != nil {
		return fmt.Errorf("writing repaired documents: %w", err)
	}
	for i, c := range r.pending {
		switch {
		case res[i].Conflict && c.Result == ResultMissing:
			// Nothing is stored, yet the version is refused: the
			// tombstone of a DELETE that bumped the version.
			r.stats.Kept++
			r.note(c, "kept: the document was deleted less than index.gc_deletes (60s) ago; repair again after it", 0)
		case res[i].Conflict:
			r.stats.Kept++
			r.note(c, "kept: Elasticsearch holds a newer version", 0)
		case res[i].Err != "":
			r.stats.Failed++
			r.note(c, fmt.Sprintf("failed: status %d: %s", res[i].Status, res[i].Err), 0)
		default:
			r.stats.Written++
			r.note(c, "written", c.ExpectedVersion)
		}
	}
	r.pending = r.pending[:0]
	return nil
}
