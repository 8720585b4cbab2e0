package eventschema

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// general is what the general validator alone says of payload.
func general(t *testing.T, r *Registry, k key, payload []byte) bool {
	t.Helper()
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(payload))
	return err == nil && r.schemas[k].Validate(inst) == nil
}

func flatPayloads() []string {
	var out []string
	for _, name := range []string{`"a"`, `""`, `"é☃𝄞"`, `"` + strings.Repeat("x", 200) + `"`, `"` + strings.Repeat("é", 201) + `"`,
		`"a\"b"`, `"\u0061"`, "\"bad \xff\"", `5`, `null`} {
		for _, price := range []string{`0`, `-0`, `19.99`, `19.990`, `1.999`, `-1`, `-0.01`, `100000000000`, `100000000000.00`,
			`100000000000.01`, `1e2`, `0.1e1`, `123456789012345678.5`, `"1"`, `0.001`, `99999999999.99`} {
			for _, stock := range []string{`0`, `1`, `-1`, `1.0`, `1.5`, `9007199254740991`, `9007199254740992`, `1e3`, `true`} {
				out = append(out, fmt.Sprintf(`{"name":%s,"description":"d","price":%s,"stock":%s}`, name, price, stock))
			}
		}
	}
	return append(out, `{}`, `[]`, `null`, ` {"reason":"x"} `, `{"reason":"x","reason":"y"}`, `{"reason":"x","reason":5}`,
		`{"re\u0061son":"x"}`, `{"reason":"x"`, `{"why":"x"}`, `{"user_id":"u","product_id":"p","quantity":1,"total_price":0.1}`,
		`{"user_id":"u","product_id":"p","quantity":0,"total_price":0.1}`, `{"user_id":"u","product_id":"p","quantity":1}`,
		`{"name":"a","description":"d","price":1,"stock":1,"stock":-1}`, `{"name":"a","description":"","price":1,"stock":0,"x":1}`)
}

// The flat check is used for every embedded schema, accepts the usual
// payloads, and never accepts what the general validator refuses.
func TestFlatAgreesWithJSONSchema(t *testing.T) {
	r, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	if len(r.flats) != len(r.schemas) {
		t.Fatalf("%d flat checks for %d schemas", len(r.flats), len(r.schemas))
	}
	accepted := 0
	for k, f := range r.flats {
		for _, p := range flatPayloads() {
			fast, slow := f.valid([]byte(p)), general(t, r, k, []byte(p))
			if fast && !slow {
				t.Errorf("%v: flat check accepts %s, the schema does not", k, p)
			}
			if fast {
				accepted++
			}
		}
	}
	for _, tc := range []struct {
		k key
		p string
	}{
		{key{"product", "ProductCreated", 1}, `{"name":"a","description":"","price":19.99,"stock":0}`},
		{key{"product", "ProductUpdated", 1}, `{"description":"é","stock":9007199254740991,"name":"x","price":100000000000}`},
		{key{"order", "OrderCreated", 1}, `{"user_id":"u","product_id":"p","quantity":1,"total_price":0.1}`},
		{key{"product", "ProductDeleted", 1}, `{}`},
	} {
		if !r.flats[tc.k].valid([]byte(tc.p)) {
			t.Errorf("%v: flat check is not sure of %s", tc.k, tc.p)
		}
	}
	t.Logf("%d payloads accepted by the flat checks", accepted)
}

// Schemas using anything the flat check does not understand get none.
func TestFlatOnlyForWhatItUnderstands(t *testing.T) {
	base := `{"type":"object","additionalProperties":false,"properties":{"p":%s}%s}`
	for _, tc := range []struct{ prop, extra string }{
		{`{"type":"string","pattern":"^a$"}`, ``},
		{`{"type":"string","enum":["a"]}`, ``},
		{`{"type":"number","multipleOf":0.05}`, ``},
		{`{"type":"number","multipleOf":10}`, ``},
		{`{"type":"number","minimum":1e2}`, ``},
		{`{"type":"boolean"}`, ``},
		{`{"type":["string","null"]}`, ``},
		{`{"type":"string","minLength":1.5}`, ``},
		{`{"type":"string"}`, `,"required":["q"]`},
		{`{"type":"string"}`, `,"minProperties":1`},
		{`{"$ref":"#/x"}`, ``},
	} {
		doc, err := jsonschema.UnmarshalJSON(strings.NewReader(fmt.Sprintf(base, tc.prop, tc.extra)))
		if err != nil {
			t.Fatal(err)
		}
		if compileFlat(doc) != nil {
			t.Errorf("flat check compiled for %s %s", tc.prop, tc.extra)
		}
	}
	for _, s := range []string{`{"type":"object","properties":{}}`, `{"type":"object","additionalProperties":true,"properties":{}}`, `[]`} {
		doc, _ := jsonschema.UnmarshalJSON(strings.NewReader(s))
		if compileFlat(doc) != nil {
			t.Errorf("flat check compiled for %s", s)
		}
	}
}

func FuzzFlatAgreesWithJSONSchema(f *testing.F) {
	for _, p := range flatPayloads() {
		f.Add([]byte(p))
	}
	r, err := Load()
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		for k, fl := range r.flats {
			if fl.valid(payload) && !general(t, r, k, payload) {
				t.Fatalf("%v: flat check accepts %q, the schema does not", k, payload)
			}
		}
	})
}
