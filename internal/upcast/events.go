package upcast

import (
	"bytes"
	"encoding/json"
	"errors"

	"cqrsflow/internal/envelope"
)

// V1Currency is the currency of every price written before events carried
// one: the shop priced in euros. It is part of the v1 → v2 upcasters and
// must never change, or the same stored event would fold differently
// before and after the change.
const V1Currency = "EUR"

// Events returns the registry of every upcaster of the shipped event
// types. Each call builds a new registry; readers keep the one they got.
func Events() *Registry {
	return NewRegistry().
		MustRegister("product", "ProductCreated", 1, ProductStateV1ToV2).
		MustRegister("product", "ProductUpdated", 1, ProductStateV1ToV2)
}

// ProductStateV1ToV2 upcasts the full-state payload of ProductCreated and
// ProductUpdated v1 ({name, description, price, stock}) to v2, which adds
// the price's ISO 4217 currency: v1 prices were in V1Currency. Every other
// member is kept byte for byte.
func ProductStateV1ToV2(payload json.RawMessage) (json.RawMessage, int, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(payload, &m); err != nil {
		return nil, 0, err
	}
	if m == nil { // the JSON literal null
		return nil, 0, errors.New("payload is null, not an object")
	}
	if _, ok := m["currency"]; ok {
		return nil, 0, errors.New("a v1 payload has no currency")
	}
	m["currency"] = json.RawMessage(`"` + V1Currency + `"`)
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false) // keep the stored strings' bytes, e.g. "<" stays "<"
	if err := enc.Encode(m); err != nil {
		return nil, 0, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), 2, nil
}

// shipped is the registry of the package-level functions; registries are
// only read once built, so one is shared.
var shipped = Events()

// Envelope returns env with its payload and schema version upcast by the
// shipped upcasters (Events): the one call for a reader of stored events
// or topic records — a backfill, an export — that hands events on. env
// comes back as it is when nothing applies, else a copy; a payload an
// upcaster refuses is an error wrapping ErrUpcast.
func Envelope(env *envelope.Envelope) (*envelope.Envelope, error) { return shipped.Envelope(env) }
