package main

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

func TestParseRefusesBadCommandLines(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"-addr", "127.0.0.1:1"}, // neither mode
		{"-addr", "127.0.0.1:1", "-answer", "-target", "http://127.0.0.1:2"}, // both
		{"-addr", "127.0.0.1:1", "-answer", "extra"},                         // leftover argument
		{"-addr", "0.0.0.0:1", "-answer"},                                    // not loopback
		{"-addr", "localhost:1", "-answer"},                                  // a name, not an IP
		{"-addr", "127.0.0.1", "-answer"},                                    // no port
		{"-addr", "127.0.0.1:1", "-target", "http://10.0.0.1:9200"},
		{"-addr", "127.0.0.1:1", "-target", "https://127.0.0.1:9200"},
		{"-addr", "127.0.0.1:1", "-target", "http://127.0.0.1:9200/prefix"},
		{"-addr", "127.0.0.1:1", "-target", "http://u:p@127.0.0.1:9200"},
		{"-addr", "127.0.0.1:1", "-target", "http://127.0.0.1:9200?x=1"},
		{"-addr", "127.0.0.1:1", "-target", "::not a url"},
		{"-nosuchflag"},
	} {
		var stderr bytes.Buffer
		if code := run(args, &stderr); code != 2 {
			t.Errorf("%q: exit %d, want 2 (stderr %q)", args, code, stderr.String())
		}
	}
	var stderr bytes.Buffer
	if code := run([]string{"-h"}, &stderr); code != 0 || !strings.Contains(stderr.String(), "-answer") {
		t.Errorf("-h: exit %d, usage %q", code, stderr.String())
	}
	cfg, err := parse([]string{"-addr", "[::1]:8080", "-target", "http://127.0.0.1:9200/"}, io.Discard)
	if err != nil || cfg.target.String() != "http://127.0.0.1:9200" {
		t.Fatalf("valid command line: %+v, %v", cfg, err)
	}
}

func TestForwardsRequestAndAnswerUnchanged(t *testing.T) {
	var got struct {
		method, uri, ct string
		body            []byte
	}
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.method, got.uri, got.ct = r.Method, r.RequestURI, r.Header.Get("Content-Type")
		got.body, _ = io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/vnd.test")
		w.WriteHeader(http.StatusTeapot)
		_, _ = io.WriteString(w, `{"hits":{"total":{"value":1}}}`)
	}))
	defer upstream.Close()
	target, _ := url.Parse(upstream.URL)
	hop := httptest.NewServer(newForwarder(target))
	defer hop.Close()

	body := `{"query":{"match":{"name":"a b"}}}`
	res, err := http.Post(hop.URL+"/my%2Falias/_search?q=x%20y&size=2", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	answer, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if got.method != http.MethodPost || got.uri != "/my%2Falias/_search?q=x%20y&size=2" || got.ct != "application/json" || string(got.body) != body {
		t.Errorf("upstream got %s %s (%s) %q", got.method, got.uri, got.ct, got.body)
	}
	if res.StatusCode != http.StatusTeapot || res.Header.Get("Content-Type") != "application/vnd.test" || string(answer) != `{"hits":{"total":{"value":1}}}` {
		t.Errorf("client got %d %s %q", res.StatusCode, res.Header.Get("Content-Type"), answer)
	}

	upstream.Close() // the target is gone: 502, not a hang or a crash
	res, err = http.Get(hop.URL + "/x/_doc/1")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusBadGateway {
		t.Errorf("target down: %d, want 502", res.StatusCode)
	}
}

func TestAnswersWritesItself(t *testing.T) {
	cfg, err := parse([]string{"-addr", "127.0.0.1:1", "-answer"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(handler(cfg))
	defer srv.Close()
	for method, want := range map[string]int{http.MethodPost: http.StatusCreated, http.MethodPut: http.StatusOK, http.MethodGet: http.StatusOK} {
		req, _ := http.NewRequest(method, srv.URL+"/v1/products", strings.NewReader(`{"name":"x"}`))
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != want || !bytes.Equal(b, answerBody) {
			t.Errorf("%s: %d %q, want %d %q", method, res.StatusCode, b, want, answerBody)
		}
	}
}
