package query

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"cqrsflow/internal/testenv/canned"
	"github.com/elastic/go-elasticsearch/v8"
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

// A read model served as stored answers its documents as encoding/json
// writes a json.RawMessage (compacted, HTML characters escaped), in a get
// by id and in a list; a deleted one is 404, one without a numeric
// version 500.
func TestReadModelAnswersAsStored(t *testing.T) {
	src := `{ "id": "` + pid + `", "version": 3, "deleted": false,` + "\n\t" +
		`"text": "<b>&amp;</b> \u2028 ` + "\u2029 é" + `", "n": 1.50, "nested": {"a": [1, 2, {}]} }`
	hit := `{"_index":"t-notes_v1","_id":"` + pid + `","_source":` + src + `}`
	es := canned.ES{
		Search: []byte(`{"hits":{"total":{"value":2,"relation":"eq"},"hits":[` + hit + `,` + hit + `]}}`),
		Doc:    []byte(hit),
	}
	r := readModelRouter(t, es)
	want, err := json.Marshal(json.RawMessage(src))
	if err != nil {
		t.Fatal(err)
	}
	w := httptest.NewRecorder()
	r.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/v1/notes/"+pid, nil))
	if w.Code != http.StatusOK || w.Body.String() != string(want) || w.Header().Get(HeaderVersion) != "3" {
		t.Errorf("get: %d %s (version %q)\nwant %s", w.Code, w.Body, w.Header().Get(HeaderVersion), want)
	}
	wantPage, err := json.Marshal(Page[json.RawMessage]{Items: []json.RawMessage{json.RawMessage(src), json.RawMessage(src)}, Page: 2, Limit: 2, Total: 2})
	if err != nil {
		t.Fatal(err)
	}
	w = httptest.NewRecorder()
	r.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/v1/notes?page=2&limit=2", nil))
	if w.Code != http.StatusOK || w.Body.String() != string(wantPage) {
		t.Errorf("list: %d %s\nwant %s", w.Code, w.Body, wantPage)
	}

	for doc, code := range map[string]int{
		`{"id":"x","version":4,"deleted":true}`: http.StatusNotFound,
		`{"id":"x","version":"four"}`:           http.StatusInternalServerError,
		`[1,2]`:                                 http.StatusInternalServerError,
	} {
		r := readModelRouter(t, canned.ES{Doc: []byte(`{"_id":"x","_source":` + doc + `}`)})
		w := httptest.NewRecorder()
		r.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/v1/notes/"+pid, nil))
		if w.Code != code {
			t.Errorf("get of %s: %d %s, want %d", doc, w.Code, w.Body, code)
		}
	}
}

func readModelRouter(t *testing.T, es canned.ES) *gin.Engine {
	t.Helper()
	client, err := elasticsearch.NewClient(elasticsearch.Config{Addresses: []string{"http://es.invalid:9200"}, Transport: es})
	if err != nil {
		t.Fatal(err)
	}
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	if err := RegisterReadModel(r, New(client, "t-", slog.New(slog.DiscardHandler)), ReadModel{Name: "notes", Kind: "note"}); err != nil {
		t.Fatal(err)
	}
	return r
}
