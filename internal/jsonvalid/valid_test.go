package jsonvalid

import (
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"
)

// sample is an event envelope as the relay publishes it.
const sample = `{"event_id":"0b5c1f3e-8a4e-4b51-9d3a-7f0e0e2f5a11","event_type":"ProductCreated","schema_version":1,
"aggregate_type":"product","aggregate_id":"p-1","version":3,"occurred_at":"2026-11-24T04:00:00.123456Z",
"recorded_at":"2026-11-24T04:00:00.2Z","global_position":42,"payload":{"name":"x","price":1.5},
"metadata":{"correlation_id":"c","idempotency_key":"k"}}`

var validCases = []string{
	sample, `{}`, `[]`, `""`, `0`, `-0`, `1.5e-3`, `-12E+4`, `true`, `false`, `null`, " \t\r\n{ \"a\" : [ 1 , 2 ] }\n",
	`"\u00e9\n\"\\\/\b\f\r\t"`, "\"\xff\xfe\"", `{"a":{"b":[{"c":null}]}}`, strings.Repeat("[", 10000) + strings.Repeat("]", 10000),
	// invalid
	``, ` `, `{"a":1,}`, `[1,]`, `{"a":{"b":1,}}`, `{"a":1}x`, `{"a":1}{}`, `{a:1}`, `{"a" 1}`, `{"a":}`, `[1 2]`, `01`, `1.`, `.5`,
	`1e`, `1e+`, `-`, `+1`, `NaN`, `Infinity`, `tru`, `nul`, `"abc`, "\"a\x01\"", `"\x"`, `"\u12"`, `"\u12G4"`, `{"a":1`, `[`, `{`,
	`'a'`, "\x00", strings.Repeat("[", 10001) + strings.Repeat("]", 10001), `{"a":1,"b"}`, `{,}`, `[,]`, `[1,,2]`,
}

// Valid answers as encoding/json.Valid on hand-picked inputs.
func TestValidMatchesEncodingJSON(t *testing.T) {
	for _, in := range validCases {
		if got, want := Valid([]byte(in)), json.Valid([]byte(in)); got != want {
			t.Errorf("Valid(%.60q) = %v, encoding/json says %v", in, got, want)
		}
	}
}

// Short strings over JSON's punctuation, drawn at random (fixed seed):
// Valid answers as encoding/json.Valid on every one.
func TestValidRandomShortInputs(t *testing.T) {
	const alphabet = "{}[]\":,01-.eE+ tnrufals\\/\x1f\xff"
	r := rand.New(rand.NewPCG(1, 2))
	buf := make([]byte, 0, 16)
	for range 200000 {
		buf = buf[:0]
		for range r.IntN(14) {
			buf = append(buf, alphabet[r.IntN(len(alphabet))])
		}
		if got, want := Valid(buf), json.Valid(buf); got != want {
			t.Fatalf("Valid(%q) = %v, encoding/json says %v", buf, got, want)
		}
	}
}

// FuzzValid: on any bytes, valid answers as encoding/json.Valid.
func FuzzValid(f *testing.F) {
	for _, in := range validCases[:20] {
		f.Add([]byte(in))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if got, want := Valid(b), json.Valid(b); got != want {
			t.Fatalf("Valid(%q) = %v, encoding/json says %v", b, got, want)
		}
	})
}

func BenchmarkValid(b *testing.B) {
	in := []byte(strings.Replace(sample, `{"name":"x","price":1.5}`,
		`{"name":"p-123","description":"`+strings.Repeat("x", 230)+`","price":19.99,"stock":42}`, 1))
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		if !Valid(in) {
			b.Fatal("invalid")
		}
	}
}

func BenchmarkValidEncodingJSON(b *testing.B) {
	in := []byte(strings.Replace(sample, `{"name":"x","price":1.5}`,
		`{"name":"p-123","description":"`+strings.Repeat("x", 230)+`","price":19.99,"stock":42}`, 1))
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		if !json.Valid(in) {
			b.Fatal("invalid")
		}
	}
}
