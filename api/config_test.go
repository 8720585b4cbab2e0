package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"cqrsflow/internal/cli"
	"cqrsflow/internal/config"
	"cqrsflow/internal/eventstore"
)

// run runs the api program in-process: nil on exit 0, else an error with
// the exit status and what it printed on stderr.
func run(ctx context.Context, args []string) error {
	var stdout, stderr bytes.Buffer
	if code := program.Run(ctx, args, &stdout, &stderr); code != cli.ExitOK {
		return fmt.Errorf("exit %d: %s", code, stderr.String())
	}
	return nil
}

func parseConfig(args []string) (Config, *config.Set, error) {
	var c Config
	s := config.NewSet("api")
	c.register(s)
	if err := s.Parse(args); err != nil {
		return c, s, err
	}
	return c, s, errors.Join(s.Err(), c.validate())
}

func TestConfigMasksSecretsAndReportsAllErrors(t *testing.T) {
	_, s, err := parseConfig([]string{"-api-keys", "ops:supersecretkey-123456",
		"-postgres-url", "postgres://u:hunter2@127.0.0.1:1/db"})
	if err != nil {
		t.Fatal(err)
	}
	logged := fmt.Sprint(s.LogAttrs()...)
	for _, secret := range []string{"supersecretkey", "hunter2"} {
		if strings.Contains(logged, secret) {
			t.Errorf("logged config reveals %q: %s", secret, logged)
		}
	}
	t.Setenv("RATE_LIMIT_RPS", "fast")
	err = run(context.Background(), []string{"-max-body-bytes", "-1", "-shutdown-timeout", "0s", "extra"})
	for _, want := range []string{"exit 2", "RATE_LIMIT_RPS", "MAX_BODY_BYTES", "SHUTDOWN_TIMEOUT", "unexpected arguments"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not mention %s", err, want)
		}
	}
}

// TestHelpShowsNoSecrets: -h of every command exits 0 and prints neither
// the API keys nor a password given by env, in URL or key=value form.
func TestHelpShowsNoSecrets(t *testing.T) {
	t.Setenv("API_KEYS", "ops:supersecretkey-123456")
	t.Setenv("POSTGRES_URL", "host=127.0.0.1 user=u password=hunter2 dbname=d")
	t.Setenv("ELASTICSEARCH_URL", "http://elastic:esPassw0rd@127.0.0.1:9200")
	t.Setenv("OIDC_JWKS_URL", "https://u:jwksPassw0rd@id.example/jwks")
	for _, args := range [][]string{{"-h"}, {"--help"}, {"serve", "-h"}, {"migrate", "-h"}, {"-bad-flag"}, {"serve", "-max-body-bytes", "x"}} {
		var stdout, stderr bytes.Buffer
		code := program.Run(context.Background(), args, &stdout, &stderr)
		out := stdout.String() + stderr.String()
		for _, secret := range []string{"supersecretkey", "hunter2", "esPassw0rd", "jwksPassw0rd"} {
			if strings.Contains(out, secret) {
				t.Errorf("api %v reveals %q:\n%s", args, secret, out)
			}
		}
		wantCode := cli.ExitOK
		if strings.HasPrefix(args[len(args)-1], "-bad") || args[len(args)-1] == "x" {
			wantCode = cli.ExitUsage
		}
		if code != wantCode {
			t.Errorf("api %v: exit %d, want %d\n%s", args, code, wantCode, out)
		}
	}
}

func TestStrictCommandLine(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"serv"}, cli.ExitUsage, `unknown command "serv"`},
		{[]string{"migrate", "now"}, cli.ExitUsage, "unexpected arguments"},
		{[]string{"snapshots"}, cli.ExitUsage, "rebuild"},
		{[]string{"snapshots", "rebiuld"}, cli.ExitUsage, `unknown command "snapshots rebiuld"`},
		{[]string{"snapshots", "rebuild", "all"}, cli.ExitUsage, "unexpected arguments"},
		{[]string{"snapshots", "rebuild", "-aggregate-types", "product,note"}, cli.ExitUsage, `"note" has no snapshots`},
		{[]string{"snapshots", "rebuild", "-aggregate-types", ""}, cli.ExitUsage, "at least one aggregate type"},
		{[]string{"--version"}, cli.ExitOK, "api "},
		{[]string{"serve", "--version"}, cli.ExitOK, "api "},
	} {
		var stdout, stderr bytes.Buffer
		code := program.Run(context.Background(), tc.args, &stdout, &stderr)
		if code != tc.code || !strings.Contains(stdout.String()+stderr.String(), tc.want) {
			t.Errorf("api %v: exit %d, output %q; want exit %d and %q", tc.args, code, stdout.String()+stderr.String(), tc.code, tc.want)
		}
	}
}

// TestKeyFilePermissions: an API key file others can read, or a state dir
// others can write (whose api-key would be trusted), is refused at start
// with the command that fixes it; the key is never printed.
func TestKeyFilePermissions(t *testing.T) {
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("CQRSFLOW_STATE_DIR", dir)
	keyFile := filepath.Join(dir, "api-key")
	if err := os.WriteFile(keyFile, []byte("filesecretkey-0123456789\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"-api-keys-file", keyFile}, nil} { // explicit, and the state dir's default
		_, _, err := parseConfig(args)
		if err == nil || !strings.Contains(err.Error(), "chmod 600 "+keyFile) {
			t.Errorf("api %v with a 0644 key file: %v, want a refusal saying chmod 600", args, err)
		}
		err = run(context.Background(), append([]string{"serve", "-postgres-url", "postgres://u@127.0.0.1:1/db"}, args...))
		if err == nil || !strings.Contains(err.Error(), "exit 2") || !strings.Contains(err.Error(), "chmod 600") {
			t.Errorf("api serve %v: %v, want exit 2 naming the fix", args, err)
		}
		if err != nil && strings.Contains(err.Error(), "filesecretkey") {
			t.Errorf("the refusal prints the key: %v", err)
		}
	}
	if err := os.Chmod(keyFile, 0o600); err != nil {
		t.Fatal(err)
	}
	if c, _, err := parseConfig(nil); err != nil || c.APIKeysFile != keyFile {
		t.Fatalf("0600 key file in a 0755 state dir: file %q, %v", c.APIKeysFile, err)
	}
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	if _, _, err := parseConfig(nil); err == nil || !strings.Contains(err.Error(), "chmod go-w "+dir) {
		t.Errorf("world-writable state dir: %v, want a refusal saying chmod go-w", err)
	}
	// An explicit API_KEYS needs no file: the state dir is not consulted.
	if _, _, err := parseConfig([]string{"-api-keys", "ops:supersecretkey-123456"}); err != nil {
		t.Errorf("API_KEYS with a world-writable state dir: %v", err)
	}
}

// The edge settings are validated with the rest, every problem named.
func TestEdgeAndAuthSettings(t *testing.T) {
	// An empty state dir: a local stack's <state dir>/api-key would be
	// read as the default key file.
	t.Setenv("CQRSFLOW_STATE_DIR", t.TempDir())
	err := run(context.Background(), []string{"-api-keys", "svc:supersecretkey-123456:reed", "-trusted-proxies", "10.0.0.0/8,nonsense",
		"-http-write-timeout", "12s", "-http-max-header-bytes", "1024", "-client-rate-limit-rps", "-1",
		"-oidc-issuer", "https://id.example", "-oidc-jwks-url", "http://id.example/jwks"})
	for _, want := range []string{"exit 2", "API_KEYS item 1: scope 1 of 1", `"nonsense"`, "HTTP_WRITE_TIMEOUT must be above 15s",
		"HTTP_MAX_HEADER_BYTES", "CLIENT_RATE_LIMIT_RPS", "OIDC_AUDIENCE", "OIDC_JWKS_URL must use https"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not mention %s", err, want)
		}
	}
	if err != nil && strings.Contains(err.Error(), "supersecretkey") {
		t.Errorf("error quotes the key: %v", err)
	}
	// A state dir of its own: the default one may hold a local api-key
	// (make run), which would be loaded when API_KEYS is empty.
	t.Setenv("CQRSFLOW_STATE_DIR", t.TempDir())
	c, _, err := parseConfig([]string{"-api-keys", "", "-api-keys-file", "", "-oidc-issuer", "https://id.example",
		"-oidc-audience", "api", "-oidc-jwks-file", "/jwks.json", "-trusted-proxies", "10.0.0.1, 192.168.0.0/16"})
	if err != nil || c.keys != nil || len(c.TrustedProxies) != 2 {
		t.Errorf("tokens only: keys %v, proxies %v, err %v", c.keys, c.TrustedProxies, err)
	}
	if _, _, err := parseConfig([]string{"-api-keys", "", "-api-keys-file", ""}); err == nil || !strings.Contains(err.Error(), "no API keys") {
		t.Errorf("neither keys nor tokens: %v", err)
	}
}

// The profiles are off by default and only ever served on loopback.
func TestDebugAddr(t *testing.T) {
	c, _, err := parseConfig([]string{"-api-keys", "svc:supersecretkey-123456"})
	if err != nil || c.Debug.Addr != "" {
		t.Fatalf("default DEBUG_ADDR = %q, %v; want off", c.Debug.Addr, err)
	}
	for _, addr := range []string{"127.0.0.1:6060", "[::1]:6060", "localhost:6060"} {
		if _, _, err := parseConfig([]string{"-api-keys", "svc:supersecretkey-123456", "-debug-addr", addr}); err != nil {
			t.Errorf("DEBUG_ADDR %s: %v", addr, err)
		}
	}
	for _, addr := range []string{":6060", "0.0.0.0:6060", "10.1.2.3:6060", "example.com:6060", "6060", "127.0.0.1:8080",
		"[::]:6060", "127.0.0.1", "localhost.example.com:6060", "LOCALHOST.:6060", "http://127.0.0.1:6060", "127.0.0.1:6060/x",
		"127.0.0.1:0", "127.0.0.1:65536", "127.0.0.1:-1", "127.0.0.1:pprof", "%31%32%37.0.0.1:6060", " 127.0.0.1:6060", "127.0.0.1:6060\n",
		"[fe80::1%lo]:6060", "192.168.1.10:6060", "[::ffff:10.0.0.1]:6060"} {
		_, _, err := parseConfig([]string{"-api-keys", "svc:supersecretkey-123456", "-debug-addr", addr})
		if err == nil || !strings.Contains(err.Error(), "DEBUG_ADDR") {
			t.Errorf("DEBUG_ADDR %s: err = %v, want it refused", addr, err)
		}
	}
}

func TestGroupCommitSettings(t *testing.T) {
	c, _, err := parseConfig([]string{"-api-keys", "ops:supersecretkey-123456"})
	if err != nil {
		t.Fatal(err)
	}
	if !c.GroupCommit || c.batchConfig().MaxBatch != 64 || c.GroupCommitLinger != 0 {
		t.Errorf("defaults: %+v, want group commit on, 64 per batch, no linger", c)
	}
	if bc := c.batchConfig(); bc.Timeout != c.CommandTimeout {
		t.Errorf("a batch is bounded by %v, want COMMAND_TIMEOUT %v", bc.Timeout, c.CommandTimeout)
	}
	_, _, err = parseConfig([]string{"-group-commit-max-batch", "0", "-group-commit-committers", "-1", "-group-commit-linger", "5s"})
	for _, want := range []string{"max batch", "committers", "linger"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not mention %s", err, want)
		}
	}
	// Off: the batch settings are not used, so they are not checked.
	if _, _, err := parseConfig([]string{"-api-keys", "ops:supersecretkey-123456", "-group-commit=false", "-group-commit-max-batch", "0"}); err != nil {
		t.Errorf("group commit off: %v", err)
	}
	t.Setenv("GROUP_COMMIT", "maybe")
	if _, _, err := parseConfig([]string{"-api-keys", "ops:supersecretkey-123456"}); err == nil || !strings.Contains(err.Error(), "GROUP_COMMIT") {
		t.Errorf("GROUP_COMMIT=maybe: %v, want it named", err)
	}
}

func TestNotifyInterval(t *testing.T) {
	c, _, err := parseConfig([]string{"-api-keys", "ops:supersecretkey-123456"})
	if err != nil {
		t.Fatal(err)
	}
	if c.NotifyInterval != eventstore.DefaultNotifyInterval {
		t.Errorf("default %v, want %v", c.NotifyInterval, eventstore.DefaultNotifyInterval)
	}
	for _, v := range []string{"0s", "1ms", "1s"} {
		if c, _, err := parseConfig([]string{"-api-keys", "ops:supersecretkey-123456", "-notify-interval", v}); err != nil || c.NotifyInterval.String() != v {
			t.Errorf("NOTIFY_INTERVAL=%s: %v, %v", v, c.NotifyInterval, err)
		}
	}
	for _, v := range []string{"-1ms", "1001ms", "1h", "25", "soon", ""} {
		_, _, err := parseConfig([]string{"-api-keys", "ops:supersecretkey-123456", "-notify-interval", v})
		if err == nil || !strings.Contains(err.Error(), "NOTIFY_INTERVAL") && !strings.Contains(err.Error(), "notify-interval") {
			t.Errorf("NOTIFY_INTERVAL=%q: %v, want it refused and named", v, err)
		}
	}
}

func TestReadBatchSettings(t *testing.T) {
	c, _, err := parseConfig([]string{"-api-keys", "ops:supersecretkey-123456"})
	if err != nil {
		t.Fatal(err)
	}
	if rb := c.readBatchConfig(); !rb.Gets || rb.Searches || rb.MaxBatch != 64 || rb.Slots != 2 {
		t.Errorf("defaults: %+v, want gets batched, searches not, 64 per batch, 2 slots", rb)
	}
	_, _, err = parseConfig([]string{"-api-keys", "ops:supersecretkey-123456", "-read-batch-max", "0", "-read-batch-slots", "100000"})
	for _, want := range []string{"READ_BATCH_MAX", "max batch 0", "slots 100000"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not mention %s", err, want)
		}
	}
	// Off: the batch bounds are not used, so they are not checked.
	if _, _, err := parseConfig([]string{"-api-keys", "ops:supersecretkey-123456", "-read-batch-gets=false", "-read-batch-slots", "0"}); err != nil {
		t.Errorf("read batching off: %v", err)
	}
	if _, _, err := parseConfig([]string{"-api-keys", "ops:supersecretkey-123456", "-read-batch-gets=false", "-read-batch-searches", "-read-batch-slots", "0"}); err == nil {
		t.Error("searches batched with 0 slots: accepted")
	}
	for env, val := range map[string]string{"READ_BATCH_GETS": "sometimes", "READ_BATCH_SEARCHES": "2", "READ_BATCH_MAX": "64k", "READ_BATCH_SLOTS": "-"} {
		t.Run(env, func(t *testing.T) {
			t.Setenv(env, val)
			if _, _, err := parseConfig([]string{"-api-keys", "ops:supersecretkey-123456"}); err == nil || !strings.Contains(err.Error(), env) {
				t.Errorf("%s=%s: %v, want it named", env, val, err)
			}
		})
	}
}
