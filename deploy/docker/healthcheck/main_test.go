package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestRun(t *testing.T) {
	ready := true
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if !ready {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	ctx := context.Background()
	if err := run(ctx, []string{srv.URL + "/readyz"}); err != nil {
		t.Fatalf("ready: %v", err)
	}
	ready = false
	if err := run(ctx, []string{srv.URL + "/readyz"}); err == nil || !strings.Contains(err.Error(), "503") {
		t.Fatalf("not ready: want a 503 error, got %v", err)
	}
	srv.Close()
	if err := run(ctx, []string{srv.URL + "/readyz"}); err == nil {
		t.Fatal("server down: want an error")
	}
	for _, args := range [][]string{nil, {"a", "b"}, {"ftp://x"}, {"http://"}} {
		if err := run(ctx, args); err == nil {
			t.Errorf("run(%q): want an error", args)
		}
	}
}
