package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"cqrsflow/internal/cli"
	"cqrsflow/internal/config"
)

func parseConfig(args []string) (cfg, error) {
	var c cfg
	s := config.NewSet("demo")
	c.register(s)
	if err := s.Parse(args); err != nil {
		return c, err
	}
	return c, errors.Join(s.Err(), c.validate())
}

// TestHelpHidesTheKey: -h exits 0 and never shows API_KEY.
func TestHelpHidesTheKey(t *testing.T) {
	t.Setenv("API_KEY", "demo-secret-key-0123456789")
	var stdout, stderr bytes.Buffer
	code := program.Run(context.Background(), []string{"-h"}, &stdout, &stderr)
	if code != cli.ExitOK || strings.Contains(stdout.String()+stderr.String(), "demo-secret-key") {
		t.Fatalf("exit %d, output:\n%s%s", code, stdout.String(), stderr.String())
	}
	if code := program.Run(context.Background(), []string{"run", "-h"}, &stdout, &stderr); code != cli.ExitOK ||
		strings.Contains(stdout.String(), "demo-secret-key") || !strings.Contains(stdout.String(), "DEMO_RATE") {
		t.Fatalf("run -h: exit %d, output:\n%s", code, stdout.String())
	}
	if code := program.Run(context.Background(), []string{"fast"}, &stdout, &stderr); code != cli.ExitUsage {
		t.Fatalf("unknown command: exit %d, want %d", code, cli.ExitUsage)
	}
}

func TestParseConfig(t *testing.T) {
	keyFile := filepath.Join(t.TempDir(), "api-key")
	if err := os.WriteFile(keyFile, []byte("0123456789abcdef0123\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := parseConfig([]string{"-api-key-file", keyFile, "-api-url", "http://127.0.0.1:8080/"})
	if err != nil {
		t.Fatal(err)
	}
	if c.APIKey != "0123456789abcdef0123" || c.APIURL != "http://127.0.0.1:8080" {
		t.Fatalf("got %+v", c)
	}
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"-api-key", "k", "-api-url", "http://10.1.2.3:8080"}, "only loads a loopback API"},
		{[]string{"-api-key", "k", "-api-url", "ftp://127.0.0.1"}, "want http://host:port"},
		{[]string{"-api-key-file", filepath.Join(t.TempDir(), "missing")}, "API_KEY_FILE"},
		{[]string{"-api-key", "k", "-demo-rate", "0"}, "DEMO_RATE 0"},
		{[]string{"-api-key", "k", "-demo-workers", "100"}, "DEMO_WORKERS 100"},
		{[]string{"-api-key", "k", "-demo-duration", "0s"}, "DEMO_DURATION 0s"},
	}
	for _, tc := range cases {
		_, err := parseConfig(tc.args)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("parseConfig(%q) = %v, want an error containing %q", tc.args, err, tc.want)
		}
	}
}
