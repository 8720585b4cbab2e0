package httpapi

import (
	"bytes"
	"encoding/json"
	"maps"
	"testing"
)

var decodeSeeds = []string{
	`{"name":"a","price":1.5,"stock":2}`, ` {"name" : "a" , "x":[1,{"y":null}], "z":{}} `, `{}`, `{"a":1,"a":2}`,
	`{"n\u0061me":"x"}`, `{"näme":"x"}`, `{"name":"caf\u00e9 \"q\" \\ /"}`, "{\"name\":\"bad \xff utf8\"}",
	`{"name":"a",}`, `{"name":"a"`, `[{"name":"a"}]`, `null`, `"str"`, `12`, `{"a":1} {"b":2}`, `{"a":01}`,
	"{\"name\":\"tab\tinside\"}", `{"name":"\ud800"}`, `{"name":"<&>\u2028"}`, "\ufeff{}", `{"a":tru}`,
	`{"name":"` + string(make([]byte, 0)) + `"}`, `{"description":"line\nbreak"}`, `{"name":123,"description":true}`,
}

// decodeObject's fast path decodes what encoding/json decodes, byte for
// byte, and leaves everything else (errors included) to encoding/json.
func sameAsEncodingJSON(t *testing.T, body []byte) {
	t.Helper()
	o := decodeObject(body, false, "name", "description", "price", "stock", "a")
	var ref map[string]json.RawMessage
	err := json.Unmarshal(body, &ref)
	if len(bytes.TrimSpace(body)) == 0 {
		return
	}
	if err != nil || ref == nil {
		if len(o.errs) == 0 || o.errs[0].Field != "body" {
			t.Fatalf("%q: encoding/json: %v, decodeObject errors %v", body, err, o.errs)
		}
		return
	}
	if !maps.EqualFunc(o.raw, ref, func(a, b json.RawMessage) bool { return bytes.Equal(a, b) }) {
		t.Fatalf("%q: members %q, encoding/json %q", body, o.raw, ref)
	}
	for k, v := range ref {
		var want string
		werr := json.Unmarshal(v, &want)
		got := o.str(k)
		switch {
		case werr != nil && got != nil:
			t.Fatalf("%q: field %s: %q, encoding/json refuses it: %v", body, k, *got, werr)
		case werr == nil && (got == nil || *got != want):
			t.Fatalf("%q: field %s: %v, encoding/json %q", body, k, got, want)
		}
	}
}

func TestDecodeObjectIsEncodingJSON(t *testing.T) {
	for _, s := range decodeSeeds {
		sameAsEncodingJSON(t, []byte(s))
	}
	// Unknown fields are named, sorted, after a fast decode as after a slow one.
	for _, body := range []string{`{"zz":1,"name":"a","b":2}`, `{"zz":1,"name":"a","b":2,"n\u00e4":3}`} {
		o := decodeObject([]byte(body), false, "name")
		if len(o.errs) < 2 || o.errs[0].Field != "b" || o.errs[len(o.errs)-1].Field != "zz" {
			t.Errorf("%s: errors %v", body, o.errs)
		}
	}
}

func FuzzDecodeObjectIsEncodingJSON(f *testing.F) {
	for _, s := range decodeSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) { sameAsEncodingJSON(t, body) })
}
