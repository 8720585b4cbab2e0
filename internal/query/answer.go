package query

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	fastjson "github.com/goccy/go-json"

	"cqrsflow/internal/esindex"
	"cqrsflow/internal/jsonvalid"
)

// Elasticsearch's answers are read whole into a pooled buffer, checked to
// be one valid JSON value (goccy/go-json accepts some invalid input, see
// internal/jsonvalid) and decoded with goccy/go-json into types that hold
// only what the routes return: hits.total, each hit's _source, a GET's
// _source. Decoding the answer was the larger part of a search's CPU in
// the api with encoding/json's reflection.

// maxAnswerBytes bounds one answer: a page of at most MaxLimit documents
// of the read models is far below it; a larger answer is an error, not a
// memory spike.
const maxAnswerBytes = 32 << 20

// searchAnswer is what a search needs of a _search answer.
type searchAnswer[T any] struct {
	Hits struct {
		Total struct {
			Value int `json:"value"`
		} `json:"total"`
		Hits []struct {
			Source T `json:"_source"`
		} `json:"hits"`
	} `json:"hits"`
}

// docAnswer is what a get needs of a GET _doc answer.
type docAnswer[T any] struct {
	Source *T `json:"_source"`
}

// errShape: the answer is JSON, but its values are not of the types
// expected (a document the read model should not hold).
var errShape = errors.New("unexpected answer")

// decodeBody reads body and decodes it into v. A body that cannot be
// read, is too large or is not JSON wraps esindex.ErrUnavailable (the
// connection broke or something other than Elasticsearch answered); one
// whose values do not fit v wraps errShape.
func decodeBody(body io.Reader, v any) error { return decodeAnswer(body, maxAnswerBytes, v) }

// decodeAnswer is decodeBody for an answer of at most limit bytes.
func decodeAnswer(body io.Reader, limit int64, v any) error {
	bp := bufPool.Get().(*[]byte)
	buf := bytes.NewBuffer((*bp)[:0])
	defer func() {
		if b := buf.Bytes(); cap(b) <= maxPooled {
			*bp = b[:0]
			bufPool.Put(bp)
		}
	}()
	n, err := buf.ReadFrom(io.LimitReader(body, limit+1))
	switch {
	case err != nil:
		return fmt.Errorf("%w: reading answer: %w", esindex.ErrUnavailable, err)
	case n > limit:
		return fmt.Errorf("%w: answer larger than %d bytes", esindex.ErrUnavailable, limit)
	case !jsonvalid.Valid(buf.Bytes()):
		return fmt.Errorf("%w: answer is not valid JSON", esindex.ErrUnavailable)
	}
	// Unmarshal decodes from its own copy of the bytes (its strings point
	// into that copy), so the buffer can go back to the pool.
	if err := fastjson.Unmarshal(buf.Bytes(), v); err != nil {
		return fmt.Errorf("%w: %w", errShape, err)
	}
	return nil
}
