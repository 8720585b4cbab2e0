// Package config reads settings from environment variables with flags of the
// same meaning (POSTGRES_URL / -postgres-url): flag > env > default.
package config

import (
	"flag"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// Local-stack defaults shared by every binary (ARCHITECTURE.md).
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

// String registers a string setting.
func String(fs *flag.FlagSet, p *string, env, def, usage string) {
	fs.StringVar(p, FlagName(env), envOr(env, def), usage+" (env "+env+")")
}

// Int registers an int setting; a malformed env value is reported by Errs.
func Int(fs *flag.FlagSet, p *int, env string, def int, usage string, errs *[]error) {
	v := def
	if s, ok := os.LookupEnv(env); ok {
		n, err := strconv.Atoi(s)
		if err != nil {
			*errs = append(*errs, fmt.Errorf("%s: %q is not an integer", env, s))
		} else {
			v = n
		}
	}
	fs.IntVar(p, FlagName(env), v, usage+" (env "+env+")")
}

// Duration registers a duration setting; a malformed env value is reported by Errs.
func Duration(fs *flag.FlagSet, p *time.Duration, env string, def time.Duration, usage string, errs *[]error) {
	v := def
	if s, ok := os.LookupEnv(env); ok {
		d, err := time.ParseDuration(s)
		if err != nil {
			*errs = append(*errs, fmt.Errorf("%s: %q is not a duration", env, s))
		} else {
			v = d
		}
	}
	fs.DurationVar(p, FlagName(env), v, usage+" (env "+env+")")
}

// Bool registers a bool setting; a malformed env value is reported by Errs.
func Bool(fs *flag.FlagSet, p *bool, env string, def bool, usage string, errs *[]error) {
	v := def
	if s, ok := os.LookupEnv(env); ok {
		b, err := strconv.ParseBool(s)
		if err != nil {
			*errs = append(*errs, fmt.Errorf("%s: %q is not a boolean", env, s))
		} else {
			v = b
		}
	}
	fs.BoolVar(p, FlagName(env), v, usage+" (env "+env+")")
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

// MaskURL hides the password of a URL for logging.
func MaskURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		return s
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	return u.String()
}
