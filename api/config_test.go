package main

import (
	"fmt"
	"strings"
	"testing"
)

func TestConfigMasksSecretsAndReportsAllErrors(t *testing.T) {
	c, err := parseConfig("api", []string{"-api-keys", "ops:supersecretkey-123456",
		"-postgres-url", "postgres://u:hunter2@127.0.0.1:1/db"})
	if err != nil {
		t.Fatal(err)
	}
	logged := fmt.Sprint(c.logAttrs()...)
	for _, secret := range []string{"supersecretkey", "hunter2"} {
		if strings.Contains(logged, secret) {
			t.Errorf("logged config reveals %q: %s", secret, logged)
		}
	}
	t.Setenv("RATE_LIMIT_RPS", "fast")
	_, err = parseConfig("api", []string{"-max-body-bytes", "-1", "-shutdown-timeout", "0s", "extra"})
	for _, want := range []string{"RATE_LIMIT_RPS", "MAX_BODY_BYTES", "SHUTDOWN_TIMEOUT", "unexpected arguments"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not mention %s", err, want)
		}
	}
}
