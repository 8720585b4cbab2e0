package projector

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"cqrsflow/internal/envelope"
	"cqrsflow/internal/esindex"
	"cqrsflow/internal/projection/products"
)

// FuzzProcessRecords feeds arbitrary record values (three records of one
// key, then a valid event of another aggregate) through the processor:
// decode → fold → bulk against an in-memory store that refuses some
// documents for good. Whatever the bytes, handle returns at once (no
// retry loop: bad data is never transient), every record is either
// projected (applied, duplicate, stale, parked) or dead-lettered with a
// known reason code, the other aggregate is applied (nothing stalls), and
// no stored document has an id Elasticsearch would refuse.
func FuzzProcessRecords(f *testing.F) {
	valid := func(id, typ string, v int64, payload string) []byte { return rec(id, typ, v, payload).Value }
	f.Add("a", valid("a", products.Created, 1, pl), valid("a", products.Updated, 2, pl), valid("a", products.Updated, 3, pl))
	f.Add("a", valid("a", products.Created, 1, pl), valid("a", "ProductRenamed", 2, `{}`), valid("a", products.Updated, 3, pl))
	f.Add("a", valid("a", products.Created, 1, pl), valid("a", products.Updated, 3, pl), []byte(`{"aggregate_id":"a","version":2,}`))
	f.Add("bad-id", valid("bad-id", products.Created, 1, pl), []byte(`{`), []byte(``))
	f.Add("s", valid("s", products.Created, 1, `{"name":"n","description":"d","price":1,"stock":666}`), valid("s", products.Deleted, 2, `{}`), []byte(`null`))
	f.Add(strings.Repeat("x", 600), valid(strings.Repeat("x", 600), products.Created, 1, pl), []byte(`[]`), []byte("\xff"))
	f.Add("a", []byte(`{"event_id":"e","event_type":"ProductCreated","schema_version":1,"aggregate_type":"product","aggregate_id":"a","version":1,"payload":{"name":"x",}}`), []byte(`{}`), []byte(`{"version":1e400}`))
	f.Fuzz(func(t *testing.T, key string, a, b, c []byte) {
		p, st, dlq, m := newTestProcessor()
		p.store = &rejectingStore{memStore: st}
		recs := []*kgo.Record{}
		for i, v := range [][]byte{a, b, c} {
			recs = append(recs, &kgo.Record{Topic: "t", Offset: int64(i), Key: []byte(key), Value: v})
		}
		other := "other-aggregate"
		if key == other {
			other += "-2"
		}
		last := rec(other, products.Created, 1, pl)
		last.Offset = 3
		recs = append(recs, last)

		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := p.handle(ctx, recs); err != nil {
			t.Fatalf("handle: %v (bad data must never be retried)", err)
		}
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			t.Fatal("handle ran into its deadline")
		}
		if st.docs[other].Version != 1 {
			t.Fatalf("the other aggregate was not applied: %+v", st.docs[other])
		}
		for _, l := range dlq.letters {
			if !ValidReason(l.Code) || l.Reason == "" {
				t.Fatalf("dead letter with code %q, reason %q", l.Code, l.Reason)
			}
		}
		for id, h := range st.docs {
			if id == "" || len(id) > esindex.MaxIDBytes || len(id) > envelope.MaxAggregateIDBytes || h.Version < 1 {
				t.Fatalf("stored document %q at v%d", id, h.Version)
			}
		}
		handled := count(m, OutcomeApplied) + count(m, OutcomeDuplicate) + count(m, OutcomeStale) + count(m, OutcomeParked) + count(m, OutcomeDLQ)
		if handled != float64(len(recs)) {
			t.Fatalf("%v of %d records accounted for (applied/duplicate/stale/parked/dlq)", handled, len(recs))
		}
	})
}
