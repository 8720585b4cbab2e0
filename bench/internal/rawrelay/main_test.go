package main

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"
	"time"
)

func TestParseRefusesBadCommandLines(t *testing.T) {
	ok := []string{"-addr", "127.0.0.1:1", "-postgres-url", "postgres://u:p@127.0.0.1:5432/db", "-brokers", "127.0.0.1:9092", "-topic-prefix", "p"}
	with := func(extra ...string) []string { return append(append([]string{}, ok...), extra...) }
	for _, args := range [][]string{
		{},
		with("extra"),                       // leftover argument
		with("-addr", "0.0.0.0:1"),          // not loopback
		with("-addr", "localhost:1"),        // a name, not an IP
		with("-addr", "127.0.0.1"),          // no port
		with("-postgres-url", ""),           // missing
		with("-postgres-url", "::nonsense"), // unparsable
		with("-postgres-url", "postgres://u@10.0.0.1:5432/db"),
		with("-postgres-url", "postgres://u@db.example:5432/db"),
		with("-brokers", ""),
		with("-brokers", "127.0.0.1:9092,10.0.0.1:9092"),
		with("-brokers", "127.0.0.1"),
		with("-topic-prefix", ""),
		with("-linger", "-1ms"),
		with("-linger", "2s"),
		with("-linger", "soon"),
		with("-poll", "0s"),
		with("-poll", "2m"),
		with("-batch", "0"),
		with("-batch", "100001"),
		{"-nosuchflag"},
	} {
		var stderr bytes.Buffer
		if code := run(args, &stderr); code != 2 {
			t.Errorf("%q: exit %d, want 2 (stderr %q)", args, code, stderr.String())
		}
	}
	var stderr bytes.Buffer
	if code := run([]string{"-h"}, &stderr); code != 0 || !strings.Contains(stderr.String(), "-linger") {
		t.Errorf("-h: exit %d, usage %q", code, stderr.String())
	}
	cfg, err := parse(with("-brokers", " 127.0.0.1:9092, [::1]:9093 ", "-linger", "0s"), io.Discard)
	if err != nil || len(cfg.brokers) != 2 || cfg.brokers[1] != "[::1]:9093" || cfg.linger != 0 || cfg.poll != 250*time.Millisecond || cfg.batch != 1000 {
		t.Fatalf("valid command line: %+v, %v", cfg, err)
	}
}

// A PostgreSQL that does not answer ends the command with an error (exit
// 1), at once.
func TestServeFailsWhenPostgresIsDown(t *testing.T) {
	cfg, err := parse([]string{"-addr", "127.0.0.1:1", "-postgres-url", "postgres://u:p@127.0.0.1:1/db?connect_timeout=2",
		"-brokers", "127.0.0.1:1", "-topic-prefix", "p"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = serve(ctx, cfg)
	if err == nil || !strings.Contains(err.Error(), "connecting to PostgreSQL") {
		t.Fatalf("serve = %v, want a connection error", err)
	}
}
