package projector

import (
	"context"
	"encoding/json"
	"fmt"
	mrand "math/rand/v2"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kgo"

	"cqrsflow/internal/envelope"
	"cqrsflow/internal/esindex"
	"cqrsflow/internal/projection/products"
	projectorrt "cqrsflow/internal/projector"
)

// prefilled is what the topic holds, as the raw loaders index it.
type prefilled struct {
	ids      []string                 // product ids, in creation order
	final    map[string]*products.Doc // each product's document after its last event
	perEvent []esindex.Op             // one document per event, in topic order
	recBytes []int                    // what each event's record weighs against the projector's BATCH_MAX_BYTES
}

// prefill produces the events: round r gives every product that still has
// events its next one, products shuffled per round.
func (b *bench) prefill(ctx context.Context) (prefilled, error) {
	fmt.Printf("prefilling %s with %d events over %d products…\n", b.topic, b.s.Events, b.s.Products)
	p := prefilled{ids: make([]string, b.s.Products), final: map[string]*products.Doc{}}
	for i := range p.ids {
		p.ids[i] = uuid.NewString()
	}
	perProduct, extra := b.s.Events/b.s.Products, b.s.Events%b.s.Products
	version := map[string]int64{}
	produced := 0
	var recs []*kgo.Record
	flush := func() error {
		if err := b.kc.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			return fmt.Errorf("prefilling: %w", err)
		}
		recs = recs[:0]
		return nil
	}
	t0 := time.Now().UTC()
	for round := 0; produced < b.s.Events; round++ {
		for _, i := range mrand.Perm(len(p.ids)) {
			if n := perProduct + btoi(i < extra); round >= n {
				continue
			}
			id := p.ids[i]
			version[id]++
			e := productEvent(i, id, version[id], int64(produced+1), t0)
			rec, err := p.add(b.topic, &e)
			if err != nil {
				return p, err
			}
			recs = append(recs, rec)
			produced++
			if len(recs) == 5000 {
				if err := flush(); err != nil {
					return p, err
				}
			}
		}
	}
	if err := flush(); err != nil {
		return p, err
	}
	fmt.Printf("prefilled in %.1fs\n", time.Since(t0).Seconds())
	return p, nil
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// productEvent is version v of product number i: Created, then Updated,
// at the schema version the api writes (v2, with the currency).
func productEvent(i int, id string, v, position int64, at time.Time) envelope.Envelope {
	typ := products.Updated
	if v == 1 {
		typ = products.Created
	}
	payload := fmt.Sprintf(`{"name":"Product %d rev %d","description":"benchmark product number %d in revision %d with a few more words to search","price":%d.%02d,"currency":"EUR","stock":%d}`,
		i, v, i, v, mrand.IntN(1000), mrand.IntN(100), mrand.IntN(100))
	return envelope.Envelope{EventID: uuid.NewString(), EventType: typ, SchemaVersion: 2, AggregateType: "product",
		AggregateID: id, Version: v, OccurredAt: at, RecordedAt: at, GlobalPosition: position, Payload: json.RawMessage(payload)}
}

// add applies e to its product's document, remembers the document for the
// raw loaders and returns the record to produce.
func (p *prefilled) add(topic string, e *envelope.Envelope) (*kgo.Record, error) {
	d, err := products.Apply(p.final[e.AggregateID], e)
	if err != nil {
		return nil, err
	}
	p.final[e.AggregateID] = d
	db, _ := json.Marshal(d)
	p.perEvent = append(p.perEvent, esindex.Op{ID: e.AggregateID, Version: e.Version, Doc: db})
	b, _ := json.Marshal(e)
	rec := &kgo.Record{Topic: topic, Key: []byte(e.AggregateID), Value: b, Headers: []kgo.RecordHeader{
		{Key: envelope.HeaderEventType, Value: []byte(e.EventType)}, {Key: envelope.HeaderSchemaVersion, Value: []byte(strconv.Itoa(e.SchemaVersion))},
		{Key: envelope.HeaderEventID, Value: []byte(e.EventID)}, {Key: envelope.HeaderContentType, Value: []byte(envelope.ContentType)},
	}}
	p.recBytes = append(p.recBytes, projectorrt.RecordBytes(rec))
	return rec, nil
}
