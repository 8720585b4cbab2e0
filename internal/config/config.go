// Package config reads settings from environment variables with flags of the
// same meaning (POSTGRES_URL / -postgres-url): flag > env > default.
package config

import (
	"os"
	"regexp"
	"strings"
)

// Local-stack defaults shared by every binary (docs/architecture.md).
const (
	DefaultPostgresURL      = "postgres://cqrsflow:cqrsflow@127.0.0.1:15432/cqrsflow?sslmode=disable"
	DefaultKafkaBrokers     = "127.0.0.1:19092"
	DefaultElasticsearchURL = "http://127.0.0.1:19200"
)

// FlagName turns an env var name into its flag name: POSTGRES_URL → postgres-url.
func FlagName(env string) string {
	return strings.ReplaceAll(strings.ToLower(env), "_", "-")
}

func envOr(env, def string) string {
	if v, ok := os.LookupEnv(env); ok {
		return v
	}
	return def
}

// SplitList splits a comma-separated list, dropping empty items.
func SplitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// secretParam matches key=value pairs whose key names a secret, in URL
// query strings (…?sslpassword=x&…) and in key=value connection strings
// (host=h password='p w' dbname=d); the value may be single-quoted.
var secretParam = regexp.MustCompile(`(?i)((?:^|[\s?&;,])(?:password|passwd|pwd|pass|sslpassword|secret|token|api_?key|access_?key|sasl_?password)\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s&;,]*)`)

// MaskURL hides the secrets of a URL or connection string for logging and
// usage output: the password of every URL's user info and the value of
// every password-like key=value pair. It over-masks rather than leaks: a
// URL's user info is taken up to the last '@' of the token.
func MaskURL(s string) string {
	s = secretParam.ReplaceAllString(s, "${1}xxxxx")
	fields := strings.SplitAfter(s, " ")
	for i, f := range fields {
		scheme := strings.Index(f, "://")
		if scheme < 0 {
			continue
		}
		rest := f[scheme+3:]
		at := strings.LastIndex(rest, "@")
		if at < 0 {
			continue
		}
		colon := strings.Index(rest[:at], ":")
		if colon < 0 {
			continue
		}
		fields[i] = f[:scheme+3] + rest[:colon+1] + "xxxxx" + rest[at:]
	}
	return strings.Join(fields, "")
}

// DefaultStateDir is the local stack's state directory (data, logs, the
// local API key) unless CQRSFLOW_STATE_DIR names another.
const DefaultStateDir = "/var/tmp/cqrsflow-local"

// StateDir returns CQRSFLOW_STATE_DIR or DefaultStateDir.
func StateDir() string {
	if d := os.Getenv("CQRSFLOW_STATE_DIR"); d != "" {
		return d
	}
	return DefaultStateDir
}
