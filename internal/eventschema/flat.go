package eventschema

import (
	"bytes"
	"encoding/json"
	"math"
	"unicode/utf8"

	"cqrsflow/internal/jsonvalid"
)

// The event schemas are flat objects of strings and numbers with length,
// range and multipleOf rules. Validating a payload with the general
// validator means decoding it into maps and comparing every number as a
// big.Rat: a fifth of a write command's CPU in the api. A schema of that
// shape is therefore also compiled into a flat check that walks the
// payload's bytes once. It only ever answers "valid" for a payload the
// general validator accepts too (FuzzFlatAgreesWithJSONSchema); for
// anything else — a violation, an escaped string or key, a number with an
// exponent or too many digits, a duplicate key — it answers "not sure",
// and the general validator decides and words the violations.

// flat is the compiled check of one flat object schema.
type flat struct {
	props    map[string]*flatProp
	required []string
}

type flatProp struct {
	kind               string // string, number or integer
	minLen, maxLen     int    // runes; maxLen -1 = no bound
	min, max, multiple *decimal
}

// decimal is a JSON number without exponent: m / 10^scale.
type decimal struct {
	m     int64
	scale int
}

// Keywords the flat check understands; a schema with any other is left
// to the general validator alone.
var (
	flatObjectKeys = map[string]bool{"$schema": true, "$id": true, "title": true, "description": true, "type": true,
		"additionalProperties": true, "required": true, "properties": true}
	flatPropKeys = map[string]bool{"title": true, "description": true, "type": true, "minLength": true, "maxLength": true,
		"minimum": true, "maximum": true, "multipleOf": true}
)

// compileFlat returns the flat check of doc (a schema as
// jsonschema.UnmarshalJSON read it), or nil when doc is not a flat
// object schema the check fully understands.
func compileFlat(doc any) *flat {
	s, ok := doc.(map[string]any)
	if !ok || s["type"] != "object" || s["additionalProperties"] != false {
		return nil
	}
	for k := range s {
		if !flatObjectKeys[k] {
			return nil
		}
	}
	props, ok := s["properties"].(map[string]any)
	if !ok {
		return nil
	}
	f := &flat{props: map[string]*flatProp{}}
	for name, p := range props {
		fp := compileProp(p)
		if fp == nil {
			return nil
		}
		f.props[name] = fp
	}
	if r, ok := s["required"]; ok {
		list, ok := r.([]any)
		if !ok {
			return nil
		}
		for _, n := range list {
			name, ok := n.(string)
			if !ok || f.props[name] == nil {
				return nil
			}
			f.required = append(f.required, name)
		}
	}
	return f
}

func compileProp(v any) *flatProp {
	p, ok := v.(map[string]any)
	if !ok {
		return nil
	}
	for k := range p {
		if !flatPropKeys[k] {
			return nil
		}
	}
	fp := &flatProp{maxLen: -1}
	switch fp.kind, _ = p["type"].(string); fp.kind {
	case "string":
		if p["minimum"] != nil || p["maximum"] != nil || p["multipleOf"] != nil {
			return nil
		}
		var ok bool
		if fp.minLen, ok = count(p, "minLength", 0); !ok {
			return nil
		}
		if fp.maxLen, ok = count(p, "maxLength", -1); !ok {
			return nil
		}
	case "number", "integer":
		if p["minLength"] != nil || p["maxLength"] != nil {
			return nil
		}
		var ok bool
		if fp.min, ok = bound(p, "minimum"); !ok {
			return nil
		}
		if fp.max, ok = bound(p, "maximum"); !ok {
			return nil
		}
		if fp.multiple, ok = bound(p, "multipleOf"); !ok {
			return nil
		}
		// Only a power of ten (1, 0.1, 0.01, …) as multipleOf: then a
		// number is a multiple when it has no more decimals than it.
		if m := fp.multiple; m != nil && m.m != 1 {
			return nil
		}
	default:
		return nil
	}
	return fp
}

// count reads a non-negative integer keyword (def when absent).
func count(p map[string]any, key string, def int) (int, bool) {
	v, ok := p[key]
	if !ok {
		return def, true
	}
	d, ok := schemaNumber(v)
	if !ok || d.scale != 0 || d.m < 0 || d.m > math.MaxInt32 {
		return 0, false
	}
	return int(d.m), true
}

// bound reads a number keyword (nil when absent).
func bound(p map[string]any, key string) (*decimal, bool) {
	v, ok := p[key]
	if !ok {
		return nil, true
	}
	d, ok := schemaNumber(v)
	if !ok {
		return nil, false
	}
	return &d, true
}

func schemaNumber(v any) (decimal, bool) {
	n, ok := v.(json.Number)
	if !ok {
		return decimal{}, false
	}
	return parseDecimal([]byte(n))
}

// valid reports whether payload certainly satisfies the schema; false
// means "violates it or not sure".
func (f *flat) valid(payload []byte) bool {
	if !jsonvalid.Valid(payload) {
		return false
	}
	i := 0
	for i < len(payload) && (payload[i] == ' ' || payload[i] == '\t' || payload[i] == '\n' || payload[i] == '\r') {
		i++
	}
	if i == len(payload) || payload[i] != '{' {
		return false
	}
	var seen [8]string // the members seen, to refuse duplicates
	n, ok := 0, true
	jsonvalid.Members(payload, func(key string, v []byte) {
		if !ok {
			return
		}
		p := f.props[key] // an escaped key matches no property: not sure
		if p == nil || n == len(seen) || !p.valid(v) {
			ok = false
			return
		}
		for _, k := range seen[:n] {
			if k == key {
				ok = false
				return
			}
		}
		seen[n] = key
		n++
	})
	if !ok {
		return false
	}
	for _, r := range f.required {
		found := false
		for _, k := range seen[:n] {
			found = found || k == r
		}
		if !found {
			return false
		}
	}
	return true
}

func (p *flatProp) valid(v []byte) bool {
	if p.kind == "string" {
		if len(v) < 2 || v[0] != '"' {
			return false
		}
		s := v[1 : len(v)-1]
		if bytes.IndexByte(s, '\\') >= 0 || !utf8.Valid(s) {
			return false
		}
		n := utf8.RuneCount(s)
		return n >= p.minLen && (p.maxLen < 0 || n <= p.maxLen)
	}
	d, ok := parseDecimal(v)
	if !ok || (p.kind == "integer" && bytes.IndexByte(v, '.') >= 0) {
		return false
	}
	if p.multiple != nil && d.scale > p.multiple.scale {
		return false
	}
	if p.min != nil {
		if c, ok := compare(d, *p.min); !ok || c < 0 {
			return false
		}
	}
	if p.max != nil {
		if c, ok := compare(d, *p.max); !ok || c > 0 {
			return false
		}
	}
	return true
}

// maxDigits keeps every decimal and its scaling within int64.
const maxDigits = 18

// parseDecimal reads a JSON number without exponent of at most maxDigits
// digits; trailing zeros of the fraction are dropped (1.50 = 15/10).
func parseDecimal(b []byte) (decimal, bool) {
	var d decimal
	neg := len(b) > 0 && b[0] == '-'
	if neg {
		b = b[1:]
	}
	digits, frac := 0, false
	for _, c := range b {
		switch {
		case c >= '0' && c <= '9':
			digits++
			if digits > maxDigits {
				return d, false
			}
			d.m = d.m*10 + int64(c-'0')
			if frac {
				d.scale++
			}
		case c == '.' && !frac && digits > 0:
			frac = true
		default:
			return d, false
		}
	}
	if digits == 0 {
		return d, false
	}
	for d.scale > 0 && d.m%10 == 0 {
		d.m /= 10
		d.scale--
	}
	if neg {
		d.m = -d.m
	}
	return d, true
}

// compare compares a and b exactly; false when scaling one to the
// other's decimals would overflow.
func compare(a, b decimal) (int, bool) {
	for a.scale < b.scale {
		if a.m > math.MaxInt64/10 || a.m < math.MinInt64/10 {
			return 0, false
		}
		a.m *= 10
		a.scale++
	}
	for b.scale < a.scale {
		if b.m > math.MaxInt64/10 || b.m < math.MinInt64/10 {
			return 0, false
		}
		b.m *= 10
		b.scale++
	}
	switch {
	case a.m < b.m:
		return -1, true
	case a.m > b.m:
		return 1, true
	}
	return 0, true
}
