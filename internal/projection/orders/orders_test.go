package orders

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"cqrsflow/internal/envelope"
	"cqrsflow/internal/projection"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func ev(typ string, version int64, payload string) *envelope.Envelope {
	return &envelope.Envelope{
		EventID: typ, EventType: typ, SchemaVersion: 1, AggregateType: "order", AggregateID: "o1",
		Version: version, OccurredAt: t0.Add(time.Duration(version) * time.Second), RecordedAt: t0,
		Payload: json.RawMessage(payload),
	}
}

const created = `{"user_id":"u1","product_id":"p1","quantity":2,"total_price":39.98}`

func TestApply(t *testing.T) {
	fold := func(evs ...*envelope.Envelope) (*Doc, error) {
		var d *Doc
		for _, e := range evs {
			var err error
			if d, err = Apply(d, e); err != nil {
				return nil, err
			}
		}
		return d, nil
	}
	tests := []struct {
		name       string
		events     []*envelope.Envelope
		wantStatus string
		wantErr    bool
	}{
		{"created", []*envelope.Envelope{ev(Created, 1, created)}, StatusCreated, false},
		{"paid", []*envelope.Envelope{ev(Created, 1, created), ev(Paid, 2, `{"payment_reference":"x"}`)}, StatusPaid, false},
		{"shipped", []*envelope.Envelope{ev(Created, 1, created), ev(Paid, 2, `{}`), ev(Shipped, 3, `{"tracking_number":"t"}`)}, StatusShipped, false},
		{"cancelled", []*envelope.Envelope{ev(Created, 1, created), ev(Cancelled, 2, `{"reason":"r"}`)}, StatusCancelled, false},
		{"paid without order", []*envelope.Envelope{ev(Paid, 1, `{}`)}, "", true},
		{"created twice", []*envelope.Envelope{ev(Created, 1, created), ev(Created, 2, created)}, "", true},
		{"unknown type", []*envelope.Envelope{ev(Created, 1, created), ev("OrderLost", 2, `{}`)}, "", true},
		{"bad payload", []*envelope.Envelope{ev(Created, 1, `{"user_id":"u","product_id":"p","quantity":"two","total_price":1}`)}, "", true},
		{"missing field", []*envelope.Envelope{ev(Created, 1, `{"user_id":"u","quantity":1,"total_price":1}`)}, "", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, err := fold(tc.events...)
			if tc.wantErr {
				if !errors.Is(err, projection.ErrUnprojectable) {
					t.Fatalf("err = %v, want ErrUnprojectable", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			last := tc.events[len(tc.events)-1]
			if d.Status != tc.wantStatus || d.Version != last.Version || d.UserID != "u1" || d.ProductID != "p1" ||
				d.Quantity != 2 || d.TotalPrice != 39.98 || d.LastEventID != last.EventID || !d.CreatedAt.Equal(t0.Add(time.Second)) {
				t.Errorf("document %+v, want status %s version %d", d, tc.wantStatus, last.Version)
			}
		})
	}
}
