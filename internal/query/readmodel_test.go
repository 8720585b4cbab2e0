package query

import (
	"strings"
	"testing"

	"github.com/gin-gonic/gin"
)

func TestRegisterReadModelRefusesBadNames(t *testing.T) {
	h := New(nil, "p_", nil)
	for _, bad := range []string{"", "Notes", "notes/x", "../x", "no tes", "n%2F", strings.Repeat("n", 64), "1notes"} {
		if err := RegisterReadModel(gin.New(), h, ReadModel{Name: bad}); err == nil {
			t.Errorf("RegisterReadModel(%q): no error", bad)
		}
	}
	e := gin.New()
	if err := RegisterReadModel(e, h, ReadModel{Name: "notes", Kind: "note"}); err != nil {
		t.Fatal(err)
	}
	var routes []string
	for _, r := range e.Routes() {
		routes = append(routes, r.Method+" "+r.Path)
	}
	if got := strings.Join(routes, ","); got != "GET /v1/notes/:id,GET /v1/notes" && got != "GET /v1/notes,GET /v1/notes/:id" {
		t.Fatalf("routes %s", got)
	}
}
