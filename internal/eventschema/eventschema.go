// Package eventschema validates event payloads against the JSON Schemas
// embedded from schemas/events (<aggregate_type>/<EventType>.v<N>.json)
// with santhosh-tekuri/jsonschema. The write side validates every payload
// before it is appended. Flat schemas (all of today's) also get a one-pass
// check that accepts the common valid payload without the general
// validator (flat.go); everything else goes through it.
package eventschema

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"cqrsflow/schemas/events"
)

// ErrUnknown: no schema for this aggregate type, event type and version.
var ErrUnknown = errors.New("no schema for event")

// ErrInvalid: the payload does not satisfy its schema.
var ErrInvalid = errors.New("payload violates its schema")

// Violation is one schema failure: where in the payload (JSON pointer) and why.
type Violation struct {
	Field  string `json:"field"`
	Reason string `json:"reason"`
}

// InvalidError is an ErrInvalid with the individual violations.
type InvalidError struct {
	Schema     string
	Violations []Violation
}

func (e *InvalidError) Error() string {
	parts := make([]string, len(e.Violations))
	for i, v := range e.Violations {
		parts[i] = v.Field + ": " + v.Reason
	}
	return fmt.Sprintf("%s: %s", e.Schema, strings.Join(parts, "; "))
}

// Is makes errors.Is(err, ErrInvalid) true.
func (e *InvalidError) Is(target error) bool { return target == ErrInvalid }

type key struct {
	aggregateType, eventType string
	version                  int
}

// Registry holds the compiled schemas.
type Registry struct {
	schemas map[key]*jsonschema.Schema
	flats   map[key]*flat // the flat checks of the flat schemas (flat.go)
}

var fileName = regexp.MustCompile(`^([a-z_]+)/([A-Za-z]+)\.v([0-9]+)\.json$`)

// Load compiles every schema embedded in schemas/events.
func Load() (*Registry, error) { return LoadFS(events.FS) }

// LoadFS compiles every <type>/<Event>.v<N>.json file of fsys.
func LoadFS(fsys fs.FS) (*Registry, error) {
	r := &Registry{schemas: map[key]*jsonschema.Schema{}, flats: map[key]*flat{}}
	c := jsonschema.NewCompiler()
	var files []string
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && path.Ext(p) == ".json" {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("listing event schemas: %w", err)
	}
	for _, p := range files {
		m := fileName.FindStringSubmatch(p)
		if m == nil {
			return nil, fmt.Errorf("event schema %s: name must be <aggregate_type>/<EventType>.v<N>.json", p)
		}
		b, err := fs.ReadFile(fsys, p)
		if err != nil {
			return nil, fmt.Errorf("reading event schema %s: %w", p, err)
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
		if err != nil {
			return nil, fmt.Errorf("parsing event schema %s: %w", p, err)
		}
		url := "mem:///" + p
		if err := c.AddResource(url, doc); err != nil {
			return nil, fmt.Errorf("adding event schema %s: %w", p, err)
		}
		sch, err := c.Compile(url)
		if err != nil {
			return nil, fmt.Errorf("compiling event schema %s: %w", p, err)
		}
		v, _ := strconv.Atoi(m[3])
		r.schemas[key{m[1], m[2], v}] = sch
		if f := compileFlat(doc); f != nil {
			r.flats[key{m[1], m[2], v}] = f
		}
	}
	if len(r.schemas) == 0 {
		return nil, errors.New("no event schemas found")
	}
	return r, nil
}

// Known lists the schemas as "<type>/<Event>.v<N>", sorted.
func (r *Registry) Known() []string {
	out := make([]string, 0, len(r.schemas))
	for k := range r.schemas {
		out = append(out, fmt.Sprintf("%s/%s.v%d", k.aggregateType, k.eventType, k.version))
	}
	sort.Strings(out)
	return out
}

// Validate checks payload (JSON) against the schema of the event.
func (r *Registry) Validate(aggregateType, eventType string, version int, payload []byte) error {
	k := key{aggregateType, eventType, version}
	sch, ok := r.schemas[k]
	if !ok {
		return fmt.Errorf("%w: %s/%s.v%d", ErrUnknown, aggregateType, eventType, version)
	}
	if f := r.flats[k]; f != nil && f.valid(payload) {
		return nil
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(payload))
	if err != nil {
		return &InvalidError{Schema: eventType, Violations: []Violation{{Field: "/", Reason: "not valid JSON: " + err.Error()}}}
	}
	err = sch.Validate(inst)
	if err == nil {
		return nil
	}
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return fmt.Errorf("validating %s v%d: %w", eventType, version, err)
	}
	ie := &InvalidError{Schema: fmt.Sprintf("%s/%s.v%d", aggregateType, eventType, version)}
	collect(ve, &ie.Violations)
	return ie
}

// collect flattens the leaf causes of a validation error.
func collect(ve *jsonschema.ValidationError, out *[]Violation) {
	if len(ve.Causes) == 0 {
		*out = append(*out, Violation{
			Field:  "/" + strings.Join(ve.InstanceLocation, "/"),
			Reason: fmt.Sprint(ve.ErrorKind),
		})
		return
	}
	for _, c := range ve.Causes {
		collect(c, out)
	}
}
