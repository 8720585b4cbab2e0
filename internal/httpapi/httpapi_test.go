package httpapi

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"

	"cqrsflow/internal/auth"
	"cqrsflow/internal/command"
	"cqrsflow/internal/eventschema"
	"cqrsflow/internal/eventstore"
)

// storeFunc is a fake CommandStore: unit tests and fuzzing need no database.
type storeFunc func(ctx context.Context, cmd eventstore.Command) (eventstore.Result, error)

func (f storeFunc) Execute(ctx context.Context, cmd eventstore.Command) (eventstore.Result, error) {
	return f(ctx, cmd)
}

// foldingStore runs Decide on a one-event history of the aggregate type,
// so handlers exercise the domain and the schema validation.
func foldingStore() storeFunc {
	return func(_ context.Context, cmd eventstore.Command) (eventstore.Result, error) {
		var hist []eventstore.Event
		if cmd.ExpectedVersion != eventstore.NoAggregate {
			switch cmd.AggregateType {
			case "product":
				hist = []eventstore.Event{{Version: 1, Type: "ProductCreated", SchemaVersion: 1,
					Payload: json.RawMessage(`{"name":"a","description":"","price":1,"stock":1}`)}}
			case "order":
				hist = []eventstore.Event{{Version: 1, Type: "OrderCreated", SchemaVersion: 1,
					Payload: json.RawMessage(`{"user_id":"u","product_id":"p","quantity":1,"total_price":1}`)}}
			}
			if cmd.ExpectedVersion > 1 {
				return eventstore.Result{}, &eventstore.ConflictError{AggregateType: cmd.AggregateType,
					AggregateID: cmd.AggregateID, Expected: cmd.ExpectedVersion, Current: 1}
			}
		}
		evs, err := cmd.Decide(hist)
		if err != nil {
			return eventstore.Result{}, err
		}
		res := eventstore.Result{Version: int64(len(hist) + len(evs))}
		for i, e := range evs {
			res.Appended = append(res.Appended, eventstore.Appended{Type: e.Type, Version: int64(len(hist) + i + 1)})
		}
		return res, nil
	}
}

const unitKey = "unit-key-0123456789abcdef"

func unitAuth(t testing.TB, list string) *auth.Authenticator {
	t.Helper()
	keys, err := auth.ParseKeys(list, "")
	if err != nil {
		t.Fatal(err)
	}
	return &auth.Authenticator{Keys: keys}
}

// unitEngine is the engine with the product and order command routes and,
// if set, the read routes of reads.
func unitEngine(t testing.TB, store command.Repository, reads Module) *gin.Engine {
	t.Helper()
	schemas, err := eventschema.Load()
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.RateLimitRPS = 0
	e, err := NewEngine(cfg, Deps{Store: store, Schemas: schemas, Auth: unitAuth(t, "unit:"+unitKey),
		Registerer: prometheus.NewRegistry(), Modules: modules(reads)})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// modules are the product and order command modules, and reads if set.
func modules(reads Module) []Module {
	m := []Module{ProductCommands, OrderCommands}
	if reads != nil {
		m = append(m, reads)
	}
	return m
}

func serve(e *gin.Engine, method, path, body string, hdr map[string]string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+unitKey)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	e.ServeHTTP(w, req)
	return w
}

// checkAnswer asserts the invariants every answer to arbitrary input keeps.
func checkAnswer(t *testing.T, w *httptest.ResponseRecorder, input string) {
	t.Helper()
	switch w.Code {
	case 200, 201, 202, 400, 404, 409, 413, 415, 422:
	default:
		t.Fatalf("status %d for input %q: %s", w.Code, input, w.Body)
	}
	var m map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &m); err != nil {
		t.Fatalf("non-JSON answer %q for input %q", w.Body, input)
	}
	if w.Code >= 400 {
		if e, ok := m["error"].(map[string]any); !ok || e["code"] == "" || e["message"] == "" {
			t.Fatalf("error body %s", w.Body)
		}
	}
}

const someID = "0193a3f0-1c2d-7e4f-8a9b-0c1d2e3f4a5b"

var seedBodies = []string{
	`{"name":"Lamp","description":"bright","price":19.99,"stock":3}`,
	`{"name":"","price":-1,"stock":1.5,"x":1}`,
	`{"name":"a","price":1e999999999,"stock":1}`,
	`{"name":"a","price":1E-999999999,"stock":1}`,
	`{"name":"a\u0000","price":0.001,"stock":-0}`,
	`{"name":"a","price":1,"stock":1,"expected_version":1}`,
	`{"name":"a","price":1,"stock":1,"expected_version":9223372036854775808}`,
	`{"user_id":"u","product_id":"p","quantity":1,"total_price":1}`,
	`{"user_id":7,"product_id":null,"quantity":"1","total_price":[]}`,
	`{"payment_reference":"r","reason":"x","tracking_number":"t"}`,
	`[]`, `null`, `"x"`, `{`, ``, `{"a":1}{}`, "\xff\xfe", `{"name":"\ud800"}`,
}

func FuzzDecodeProductCommand(f *testing.F) {
	for _, b := range seedBodies {
		f.Add(b, "")
		f.Add(b, `"1"`)
	}
	f.Add(`{"name":"a","price":1,"stock":1}`, "W/\"2\"")
	f.Add(`{"name":"a","price":1,"stock":1}`, "*")
	e := unitEngine(f, foldingStore(), nil)
	f.Fuzz(func(t *testing.T, body, ifMatch string) {
		hdr := map[string]string{}
		if ifMatch != "" {
			hdr["If-Match"] = ifMatch
		}
		checkAnswer(t, serve(e, "POST", "/v1/products", body, hdr), body)
		checkAnswer(t, serve(e, "PUT", "/v1/products/"+someID, body, hdr), body)
		checkAnswer(t, serve(e, "DELETE", "/v1/products/"+someID, body, hdr), body)
	})
}

func FuzzDecodeOrderCommand(f *testing.F) {
	for _, b := range seedBodies {
		f.Add(b, "k1")
	}
	f.Add(`{"user_id":"u","product_id":"p","quantity":1,"total_price":1}`, "")
	e := unitEngine(f, foldingStore(), nil)
	f.Fuzz(func(t *testing.T, body, key string) {
		hdr := map[string]string{}
		if key != "" {
			hdr["Idempotency-Key"] = key
		}
		checkAnswer(t, serve(e, "POST", "/v1/orders", body, hdr), body)
		checkAnswer(t, serve(e, "POST", "/api/commands/order/create", body, hdr), body)
		for _, a := range []string{"pay", "ship", "cancel"} {
			checkAnswer(t, serve(e, "POST", "/v1/orders/"+someID+"/"+a, body, hdr), body)
		}
	})
}

func TestPanicIsJSON500WithoutStack(t *testing.T) {
	e := unitEngine(t, foldingStore(), func(r Routes) error {
		r.Reads.GET("/v1/boom", func(*gin.Context) { panic("kaboom") })
		return nil
	})
	w := serve(e, "GET", "/v1/boom", "", nil)
	if w.Code != 500 || !strings.Contains(w.Body.String(), `"code":"internal"`) ||
		strings.Contains(w.Body.String(), "kaboom") || strings.Contains(w.Body.String(), "goroutine") {
		t.Fatalf("panic answer %d %s", w.Code, w.Body)
	}
	if w := serve(e, "GET", "/nope", "", nil); w.Code != 404 || !strings.Contains(w.Body.String(), "not_found") {
		t.Fatalf("unknown route %d %s", w.Code, w.Body)
	}
	if w := serve(e, "PATCH", "/v1/products/"+someID, "", nil); w.Code != 405 {
		t.Fatalf("wrong method %d %s", w.Code, w.Body)
	}
}

func TestUnexpectedStoreErrorIs500AndUnavailableIs503(t *testing.T) {
	e := unitEngine(t, storeFunc(func(context.Context, eventstore.Command) (eventstore.Result, error) {
		return eventstore.Result{}, context.DeadlineExceeded
	}), nil)
	if w := serve(e, "POST", "/v1/products", `{"name":"a","price":1,"stock":1}`, nil); w.Code != 503 {
		t.Fatalf("deadline: %d %s", w.Code, w.Body)
	}
}

func TestParseIfMatch(t *testing.T) {
	for in, want := range map[string]int64{`3`: 3, `"3"`: 3, `W/"12"`: 12, ` 7 `: 7} {
		if v, set, reason := parseIfMatch(in); !set || v != want || reason != "" {
			t.Errorf("%q → %d %v %q", in, v, set, reason)
		}
	}
	for _, in := range []string{"", "*"} {
		if _, set, reason := parseIfMatch(in); set || reason != "" {
			t.Errorf("%q must mean no expectation", in)
		}
	}
	for _, in := range []string{"0", "-1", "abc", `"1`, "1.5", "99999999999999999999"} {
		if _, _, reason := parseIfMatch(in); reason == "" {
			t.Errorf("%q accepted", in)
		}
	}
}

func TestRequestIDEchoedOrGenerated(t *testing.T) {
	e := unitEngine(t, foldingStore(), nil)
	w := serve(e, "GET", "/healthz", "", map[string]string{"X-Request-ID": "abc-123"})
	if w.Header().Get("X-Request-ID") != "abc-123" {
		t.Errorf("given id not echoed: %v", w.Header())
	}
	w = serve(e, "GET", "/healthz", "", map[string]string{"X-Request-ID": "bad id with spaces"})
	if id := w.Header().Get("X-Request-ID"); id == "" || strings.Contains(id, " ") {
		t.Errorf("generated id %q", id)
	}
	if w.Code != http.StatusOK {
		t.Errorf("healthz %d", w.Code)
	}
}

func TestSlowBodyGets408(t *testing.T) {
	schemas, err := eventschema.Load()
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.BodyTimeout = 200 * time.Millisecond
	e, err := NewEngine(cfg, Deps{Store: foldingStore(), Schemas: schemas, Auth: unitAuth(t, "unit:"+unitKey), Registerer: prometheus.NewRegistry(),
		Modules: modules(nil)})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(e)
	defer srv.Close()
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /v1/products HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"name\":", unitKey)
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer to a stalled body: %v", err)
	}
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusRequestTimeout || !strings.Contains(string(body), "body_timeout") {
		t.Fatalf("stalled body: %d %s", res.StatusCode, body)
	}
	// A prompt request on the same server is unaffected.
	req, _ := http.NewRequest("POST", srv.URL+"/v1/products", strings.NewReader(`{"name":"a","price":1,"stock":1}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+unitKey)
	ok, err := http.DefaultClient.Do(req)
	if err != nil || ok.StatusCode != 201 {
		t.Fatalf("prompt request: %v %v", ok, err)
	}
	ok.Body.Close()
}

// What the command layer needs from the request arrives there: the
// principal, the ids, the idempotency key and the request as sent (route
// template, id as in the path, If-Match, body) for the request hash.
func TestRequestReachesTheCommand(t *testing.T) {
	var got eventstore.Command
	fold := foldingStore()
	e := unitEngine(t, storeFunc(func(ctx context.Context, cmd eventstore.Command) (eventstore.Result, error) {
		got = cmd
		return fold(ctx, cmd)
	}), nil)
	upper := strings.ToUpper(someID)
	body := `{"payment_reference":"r-1"}`
	w := serve(e, "POST", "/v1/orders/"+upper+"/pay", body, map[string]string{"Idempotency-Key": "pay-1",
		"If-Match": `"1"`, "X-Request-ID": "req-7", "X-Correlation-ID": "flow-3"})
	if w.Code != 200 || w.Header().Get("ETag") != `"2"` || w.Body.String() != `{"id":"`+someID+`","version":2}` {
		t.Fatalf("pay: %d %v %s", w.Code, w.Header(), w.Body)
	}
	if got.AggregateType != "order" || got.AggregateID != someID || got.ExpectedVersion != 1 {
		t.Errorf("command %+v", got)
	}
	if got.Metadata.Principal != "unit" || got.Metadata.RequestID != "req-7" || got.Metadata.CorrelationID != "flow-3" ||
		got.Metadata.IdempotencyKey != "pay-1" {
		t.Errorf("metadata %+v", got.Metadata)
	}
	want := command.Fingerprint{Method: "POST", Route: "/v1/orders/:id/pay", ID: upper, IfMatch: `"1"`, Body: []byte(body)}
	if got.Idempotency == nil || got.Idempotency.Key != "pay-1" || got.Idempotency.Principal != "unit" ||
		string(got.Idempotency.RequestHash) != string(want.Hash()) {
		t.Fatalf("idempotency %+v", got.Idempotency)
	}
	if status, stored := got.Idempotency.Response(eventstore.Result{Version: 2}); status != 200 || string(stored) != w.Body.String() {
		t.Errorf("stored answer %d %s, sent %s", status, stored, w.Body)
	}
	// The seed route stores its own status.
	serve(e, "POST", "/api/commands/order/create", `{"user_id":"u","product_id":"p","quantity":1,"total_price":1}`,
		map[string]string{"Idempotency-Key": "seed-1"})
	if status, _ := got.Idempotency.Response(eventstore.Result{Version: 1}); status != 202 {
		t.Errorf("seed route stores status %d, want 202", status)
	}
}

// A replay answers the stored status and body, marked, without an ETag.
func TestReplayIsAnsweredAsStored(t *testing.T) {
	e := unitEngine(t, storeFunc(func(context.Context, eventstore.Command) (eventstore.Result, error) {
		return eventstore.Result{Replayed: true, Status: 201, Body: []byte(`{"id":"first","version":1}`)}, nil
	}), nil)
	w := serve(e, "POST", "/v1/orders", `{"user_id":"u","product_id":"p","quantity":1,"total_price":1}`,
		map[string]string{"Idempotency-Key": "o-1"})
	if w.Code != 201 || w.Body.String() != `{"id":"first","version":1}` || w.Header().Get("Idempotent-Replayed") != "true" ||
		w.Header().Get("ETag") != "" {
		t.Fatalf("replay: %d %v %s", w.Code, w.Header(), w.Body)
	}
}
