package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"cqrsflow/internal/cli"
	"cqrsflow/internal/config"
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
	for _, args := range [][]string{{"-h"}, {"--help"}, {"serve", "-h"}, {"migrate", "-h"}, {"-bad-flag"}, {"serve", "-max-body-bytes", "x"}} {
		var stdout, stderr bytes.Buffer
		code := program.Run(context.Background(), args, &stdout, &stderr)
		out := stdout.String() + stderr.String()
		for _, secret := range []string{"supersecretkey", "hunter2", "esPassw0rd"} {
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

func TestGroupCommitSettings(t *testing.T) {
	c, _, err := parseConfig(nil)
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
	if _, _, err := parseConfig([]string{"-group-commit=false", "-group-commit-max-batch", "0"}); err != nil {
		t.Errorf("group commit off: %v", err)
	}
	t.Setenv("GROUP_COMMIT", "maybe")
	if _, _, err := parseConfig(nil); err == nil || !strings.Contains(err.Error(), "GROUP_COMMIT") {
		t.Errorf("GROUP_COMMIT=maybe: %v, want it named", err)
	}
}
