package check

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// Schema is the part of a CRD's structural OpenAPI v3 schema the check
// enforces. CEL rules (x-kubernetes-validations) are not evaluated: the
// chart's own tests check the relations they express (e.g. min ≤ max).
type Schema struct {
	Type                 string             `json:"type"`
	Format               string             `json:"format"`
	Properties           map[string]*Schema `json:"properties"`
	AdditionalProperties *Schema            `json:"additionalProperties"`
	Required             []string           `json:"required"`
	Items                *Schema            `json:"items"`
	Enum                 []any              `json:"enum"`
	AnyOf                []*Schema          `json:"anyOf"`
	Minimum              *float64           `json:"minimum"`
	MinItems             *int               `json:"minItems"`
	Pattern              string             `json:"pattern"`
	Nullable             bool               `json:"nullable"`
	IntOrString          bool               `json:"x-kubernetes-int-or-string"`
	PreserveUnknown      bool               `json:"x-kubernetes-preserve-unknown-fields"`
}

// LoadCRDSchema reads a CustomResourceDefinition file and returns the
// openAPIV3Schema of the named version.
func LoadCRDSchema(file, version string) (*Schema, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var crd struct {
		Spec struct {
			Versions []struct {
				Name   string `json:"name"`
				Schema struct {
					OpenAPIV3Schema *Schema `json:"openAPIV3Schema"`
				} `json:"schema"`
			} `json:"versions"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal(b, &crd); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	for _, v := range crd.Spec.Versions {
		if v.Name == version && v.Schema.OpenAPIV3Schema != nil {
			return v.Schema.OpenAPIV3Schema, nil
		}
	}
	return nil, fmt.Errorf("%s: no schema for version %s", file, version)
}

// ValidateCustomResource checks a custom resource manifest as an API
// server with strict field validation would: duplicate keys, fields the
// schema does not have, wrong types, missing required fields, enum,
// pattern and minimum violations all fail. metadata decodes strictly into
// ObjectMeta (a CRD's schema leaves it to the API server).
func ValidateCustomResource(doc []byte, s *Schema) error {
	var obj map[string]any
	if err := yaml.UnmarshalStrict(doc, &obj); err != nil {
		return err
	}
	var probs []string
	if md, ok := obj["metadata"]; ok {
		b, err := json.Marshal(md)
		if err == nil {
			var meta metav1.ObjectMeta
			err = yaml.UnmarshalStrict(b, &meta)
		}
		if err != nil {
			probs = append(probs, "metadata: "+err.Error())
		}
	}
	rest := map[string]any{}
	for k, v := range obj {
		if k != "metadata" {
			rest[k] = v
		}
	}
	top := *s
	top.Properties = map[string]*Schema{}
	for k, v := range s.Properties {
		if k != "metadata" {
			top.Properties[k] = v
		}
	}
	probs = append(probs, validate("", rest, &top)...)
	if len(probs) > 0 {
		sort.Strings(probs)
		return fmt.Errorf("%s", strings.Join(probs, "; "))
	}
	return nil
}

func validate(path string, v any, s *Schema) []string {
	at := path
	if at == "" {
		at = "."
	}
	if v == nil {
		if s.Nullable {
			return nil
		}
		return []string{at + ": null"}
	}
	if len(s.AnyOf) > 0 && !s.IntOrString {
		for _, alt := range s.AnyOf {
			if len(validate(path, v, alt)) == 0 {
				return validateOwn(path, v, s)
			}
		}
		return []string{at + ": matches none of anyOf"}
	}
	return validateOwn(path, v, s)
}

// validateOwn checks v against s's own keywords (not anyOf).
func validateOwn(path string, v any, s *Schema) []string {
	at := path
	if at == "" {
		at = "."
	}
	bad := func(format string, a ...any) []string { return []string{at + ": " + fmt.Sprintf(format, a...)} }
	if s.IntOrString {
		switch x := v.(type) {
		case string:
			if s.Pattern != "" && !regexp.MustCompile(s.Pattern).MatchString(x) {
				return bad("%q does not match %s", x, s.Pattern)
			}
			return nil
		case float64:
			if x != math.Trunc(x) {
				return bad("%v is neither an integer nor a string", x)
			}
			return nil
		}
		return bad("%T is neither an integer nor a string", v)
	}
	if len(s.Enum) > 0 && !slices.Contains(s.Enum, v) {
		return bad("%v is not one of %v", v, s.Enum)
	}
	switch s.Type {
	case "object":
		m, ok := v.(map[string]any)
		if !ok {
			return bad("%T, want an object", v)
		}
		return validateObject(path, m, s)
	case "array":
		a, ok := v.([]any)
		if !ok {
			return bad("%T, want an array", v)
		}
		if s.MinItems != nil && len(a) < *s.MinItems {
			return bad("%d items, want at least %d", len(a), *s.MinItems)
		}
		var probs []string
		for i, e := range a {
			if s.Items != nil {
				probs = append(probs, validate(fmt.Sprintf("%s[%d]", path, i), e, s.Items)...)
			}
		}
		return probs
	case "string":
		x, ok := v.(string)
		if !ok {
			return bad("%T, want a string", v)
		}
		if s.Pattern != "" && !regexp.MustCompile(s.Pattern).MatchString(x) {
			return bad("%q does not match %s", x, s.Pattern)
		}
	case "integer", "number":
		x, ok := v.(float64)
		if !ok {
			return bad("%T, want a %s", v, s.Type)
		}
		if s.Type == "integer" && x != math.Trunc(x) {
			return bad("%v is not an integer", x)
		}
		if s.Format == "int32" && (x > math.MaxInt32 || x < math.MinInt32) {
			return bad("%v overflows int32", x)
		}
		if s.Minimum != nil && x < *s.Minimum {
			return bad("%v is below the minimum %v", x, *s.Minimum)
		}
	case "boolean":
		if _, ok := v.(bool); !ok {
			return bad("%T, want a boolean", v)
		}
	case "":
		if !s.PreserveUnknown {
			return bad("the schema gives no type")
		}
	default:
		return bad("the schema's type %q is unknown to the check", s.Type)
	}
	return nil
}

func validateObject(path string, m map[string]any, s *Schema) []string {
	var probs []string
	for _, r := range s.Required {
		if _, ok := m[r]; !ok {
			probs = append(probs, fmt.Sprintf("%s.%s: required", path, r))
		}
	}
	for k, e := range m {
		sub, ok := s.Properties[k]
		switch {
		case ok:
		case s.AdditionalProperties != nil:
			sub = s.AdditionalProperties
		case s.PreserveUnknown:
			continue
		default:
			probs = append(probs, fmt.Sprintf("%s.%s: unknown field", path, k))
			continue
		}
		probs = append(probs, validate(path+"."+k, e, sub)...)
	}
	return probs
}
