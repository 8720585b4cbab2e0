package query

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"

	"github.com/gin-gonic/gin"

	"cqrsflow/internal/esindex"
)

// ReadModel is a projection's read model served as it is stored: a get by
// id with read-your-writes and a paged list, for read models without
// routes of their own (products and orders have typed ones). Its documents
// carry the fields every projected document has (projection.Base: id,
// version, deleted, created_at, …).
type ReadModel struct {
	// Name is the projection's name: the alias <index prefix><name> and
	// the routes /v1/<name> and /v1/<name>/{id}.
	Name string
	// Kind names one document in error messages ("note").
	Kind string
}

var readModelName = regexp.MustCompile(`^[a-z][a-z0-9_]{0,62}$`)

// RegisterReadModel mounts GET /v1/<name>/{id} and GET /v1/<name> for m
// on r; r's middleware decides who may read.
func RegisterReadModel(r gin.IRouter, h *Handler, m ReadModel) error {
	if !readModelName.MatchString(m.Name) {
		return fmt.Errorf("read model name %q: want lower-case letters, digits and _", m.Name)
	}
	if m.Kind == "" {
		m.Kind = "document"
	}
	index := esindex.AliasName(h.prefix, m.Name)
	r.GET("/v1/"+m.Name+"/:id", func(c *gin.Context) {
		getByID(h, c, index, m.Kind, func(*storedDoc) bool { return true })
	})
	r.GET("/v1/"+m.Name, func(c *gin.Context) {
		pg, err := ParsePaging(c)
		if err != nil {
			badParam(c, err)
			return
		}
		ctx, cancel := h.ctx(c)
		defer cancel()
		page, err := search[storedDoc](ctx, h, index, allDocsBody(pg), pg)
		if err != nil {
			h.fail(c, err)
			return
		}
		respondPage(h, c, &page)
	})
	return nil
}

// storedDoc is a document as stored, with the two fields a get by id
// looks at.
type storedDoc struct {
	raw  json.RawMessage
	base struct {
		Version int64 `json:"version"`
		Deleted bool  `json:"deleted"`
	}
}

func (d *storedDoc) UnmarshalJSON(b []byte) error {
	d.raw = append(d.raw[:0], b...)
	return json.Unmarshal(b, &d.base)
}

// appendJSON appends the document as encoding/json writes a
// json.RawMessage: compacted, with <, >, &, U+2028 and U+2029 escaped.
// The answer it came in was checked to be valid JSON, so neither step can
// fail on it.
func (d *storedDoc) appendJSON(b []byte) ([]byte, error) {
	var out bytes.Buffer
	if err := json.Compact(&out, d.raw); err != nil {
		return b, err
	}
	w := bytes.NewBuffer(b)
	json.HTMLEscape(w, out.Bytes())
	return w.Bytes(), nil
}

func (d *storedDoc) version() int64 { return d.base.Version }
func (d *storedDoc) deleted() bool  { return d.base.Deleted }
