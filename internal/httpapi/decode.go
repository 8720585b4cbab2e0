package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"cqrsflow/internal/domain"
	"cqrsflow/internal/jsonvalid"
)

// Errors of readBody.
var (
	errBodyTooLarge = errors.New("request body too large")
	errBodyTimeout  = errors.New("request body not received in time")
)

// readBody reads the whole (already size-limited) request body.
func readBody(r *http.Request) ([]byte, error) {
	if r.Body == nil {
		return nil, nil
	}
	b, err := io.ReadAll(r.Body)
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return nil, errBodyTooLarge
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return nil, errBodyTimeout
	}
	return b, err
}

// object is a strictly decoded JSON object: every field of the body is
// known, of the right JSON type, or named in the returned error.
type object struct {
	raw  map[string]json.RawMessage
	errs domain.Errs
}

// decodeObject parses body as one JSON object whose keys are all in
// allowed. An empty body is an empty object when optional is true.
func decodeObject(body []byte, optional bool, allowed ...string) *object {
	o := &object{raw: map[string]json.RawMessage{}}
	if len(bytes.TrimSpace(body)) == 0 {
		if !optional {
			o.errs.Add("body", "is required: a JSON object")
		}
		return o
	}
	if members(body, o.raw) {
		return o.checkKnown(allowed)
	}
	if err := json.Unmarshal(body, &o.raw); err != nil {
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &se):
			o.errs.Add("body", fmt.Sprintf("is not valid JSON (offset %d): %s", se.Offset, se.Error()))
		case errors.As(err, &te):
			o.errs.Add("body", "must be a JSON object, not "+te.Value)
		default:
			o.errs.Add("body", "is not valid JSON: "+err.Error())
		}
		return o
	}
	if o.raw == nil { // the body was `null`
		o.errs.Add("body", "must be a JSON object, not null")
		return o
	}
	return o.checkKnown(allowed)
}

// members fills raw with the members of body, as encoding/json would
// decode body into a map[string]json.RawMessage, when body is a valid
// JSON object whose keys are plain ASCII without escapes — every request
// a client library sends. Anything else (not JSON, not an object, a key
// to unescape) returns false with raw untouched, and encoding/json
// decodes it and words the error. One strict pass instead of
// encoding/json's scan and decode: the decode was a tenth of a write
// command's CPU in the api.
func members(body []byte, raw map[string]json.RawMessage) bool {
	i := 0
	for i < len(body) && (body[i] == ' ' || body[i] == '\t' || body[i] == '\n' || body[i] == '\r') {
		i++
	}
	if i == len(body) || body[i] != '{' || !jsonvalid.Valid(body) {
		return false
	}
	plain := true
	jsonvalid.Members(body, func(key string, v []byte) {
		for j := 0; j < len(key); j++ {
			if key[j] == '\\' || key[j] >= utf8.RuneSelf {
				plain = false
			}
		}
		raw[key] = v
	})
	if !plain {
		clear(raw)
	}
	return plain
}

// checkKnown records every key of o that is not in allowed, sorted.
func (o *object) checkKnown(allowed []string) *object {
	var unknown []string
	for k := range o.raw {
		ok := false
		for _, a := range allowed {
			if k == a {
				ok = true
				break
			}
		}
		if !ok {
			unknown = append(unknown, k)
		}
	}
	sort.Strings(unknown)
	for _, k := range unknown {
		o.errs.Add(k, "is not a known field")
	}
	return o
}

// str returns a string field (nil if absent).
func (o *object) str(field string) *string {
	raw, ok := o.raw[field]
	if !ok {
		return nil
	}
	if len(raw) == 0 || raw[0] != '"' {
		o.errs.Add(field, "must be a string")
		return nil
	}
	// raw is a valid JSON string (it was decoded from a valid object);
	// without escapes and with valid UTF-8 its text is what is between
	// the quotes. Otherwise encoding/json unescapes it (and replaces
	// invalid UTF-8 as it always did).
	if s := raw[1 : len(raw)-1]; bytes.IndexByte(s, '\\') < 0 && utf8.Valid(s) {
		str := string(s)
		return &str
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		o.errs.Add(field, "must be a string")
		return nil
	}
	return &s
}

// optStr returns an optional string field ("" if absent).
func (o *object) optStr(field string) string {
	if p := o.str(field); p != nil {
		return *p
	}
	return ""
}

// num returns a number field as its JSON literal ("" if absent). A
// malformed value is recorded as a field error and "" returned with
// present=true so the caller does not also report it missing.
func (o *object) num(field string) (lit string, present bool) {
	raw, ok := o.raw[field]
	if !ok {
		return "", false
	}
	if len(raw) == 0 || !(raw[0] == '-' || raw[0] >= '0' && raw[0] <= '9') {
		o.errs.Add(field, "must be a number")
		return "", true
	}
	return string(raw), true
}

// expectedVersion reads the optional expected_version field.
func (o *object) expectedVersion() (int64, bool) {
	lit, present := o.num("expected_version")
	if !present || lit == "" {
		return 0, false
	}
	v, reason := domain.ParseInt(lit, 1)
	if reason != "" {
		o.errs.Add("expected_version", reason)
		return 0, false
	}
	return v, true
}

// merge appends the field errors of err (a *domain.ValidationError) and
// returns the combined validation error, or nil.
func (o *object) merge(err error) error {
	var ve *domain.ValidationError
	if errors.As(err, &ve) {
		// A field already reported by the decoder (wrong JSON type) is not
		// reported again by the domain ("is required").
		seen := map[string]bool{}
		for _, f := range o.errs {
			seen[f.Field] = true
		}
		for _, f := range ve.Fields {
			if !seen[f.Field] {
				o.errs = append(o.errs, f)
			}
		}
	} else if err != nil {
		return err
	}
	return o.errs.Err()
}

// parseIfMatch parses an If-Match header: a version as 3, "3" or W/"3".
// "*" means any existing version.
func parseIfMatch(h string) (v int64, set bool, reason string) {
	h = strings.TrimSpace(h)
	if h == "" {
		return 0, false, ""
	}
	if h == "*" {
		return 0, false, ""
	}
	h = strings.TrimPrefix(h, "W/")
	if strings.HasPrefix(h, `"`) {
		if len(h) < 2 || !strings.HasSuffix(h, `"`) {
			return 0, false, "must be an aggregate version (an integer >= 1), optionally quoted"
		}
		h = h[1 : len(h)-1]
	}
	n, err := strconv.ParseInt(h, 10, 64)
	if err != nil || n < 1 {
		return 0, false, "must be an aggregate version (an integer >= 1), optionally quoted"
	}
	return n, true, ""
}
