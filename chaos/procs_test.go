package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"
)

// The watchdog dumps and restarts a process that is alive but never
// answers /healthz, and leaves alone one that answers or is paused.
func TestWatchdogFindsAHang(t *testing.T) {
	old := hangAfter
	hangAfter = time.Second
	defer func() { hangAfter = old }()
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer ok.Close()
	dir := t.TempDir()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	mk := func(name, addr string) *binary {
		return &binary{name: name, path: "/bin/sleep", args: []string{"60"}, addr: addr, logPath: dir + "/" + name + ".log", log: log}
	}
	bins := map[string]*binary{
		"hung":    mk("hung", "127.0.0.1:1"), // nothing listens there
		"healthy": mk("healthy", strings.TrimPrefix(ok.URL, "http://")),
		"paused":  mk("paused", "127.0.0.1:1"),
	}
	for _, b := range bins {
		if err := b.start(); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = b.retire(5 * time.Second) }()
	}
	if _, err := bins["paused"].pause(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
	defer cancel()
	watch(ctx, bins)
	_, hangs := bins["hung"].Exits()
	if len(hangs) == 0 {
		t.Fatal("the hung process was not reported")
	}
	if b, _ := os.ReadFile(bins["hung"].logPath); !strings.Contains(string(b), dumpMarker) || bins["hung"].starts < 2 {
		t.Fatalf("no dump marker or no restart (%d starts):\n%s", bins["hung"].starts, b)
	}
	for _, n := range []string{"healthy", "paused"} {
		if _, h := bins[n].Exits(); len(h) > 0 {
			t.Errorf("%s reported hung: %+v", n, h)
		}
	}
}
