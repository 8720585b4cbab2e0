package config

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"
)

// Set is the settings of one command: every setting is an env var with a
// flag of the same meaning (flag > env > default), registered once with its
// default, so the default shown by -h, the value used and the value logged
// at start-up come from one place.
//
// Values are shown (in -h, flag errors and the start-up log line) through
// a masking view: a Secret is never shown, and a URL or a key=value
// connection string shows no password. A malformed env value is collected
// and reported with every other problem by Err.
type Set struct {
	fs       *flag.FlagSet
	errs     []error
	settings []setting
}

type setting struct {
	env  string
	show func() string // masked view of the current value
}

// NewSet returns an empty Set whose flags parse as the command name.
func NewSet(name string) *Set {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	return &Set{fs: fs}
}

// FlagSet is the underlying flag set (for command-specific flags that have
// no env var, such as `replay --to`).
func (s *Set) FlagSet() *flag.FlagSet { return s.fs }

// Err reports every malformed env value at once (nil when none).
func (s *Set) Err() error { return errors.Join(s.errs...) }

// Parse parses the command line. Env values were read at registration.
func (s *Set) Parse(args []string) error { return s.fs.Parse(args) }

// Args returns the arguments left after the flags.
func (s *Set) Args() []string { return s.fs.Args() }

// LogAttrs returns every setting as a slog attribute (snake_case key),
// masked as in -h: one start-up log line can show the whole configuration.
func (s *Set) LogAttrs() []any {
	out := make([]any, 0, len(s.settings))
	for _, st := range s.settings {
		out = append(out, slog.String(LogKey(st.env), st.show()))
	}
	return out
}

// LogKey turns an env var name into a log key: POSTGRES_URL → postgres_url.
func LogKey(env string) string {
	b := []byte(env)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

func (s *Set) add(p flag.Value, env, usage string, show func() string) {
	s.fs.Var(p, FlagName(env), usage+" (env "+env+")")
	s.settings = append(s.settings, setting{env: env, show: show})
}

// String registers a plain string setting.
func (s *Set) String(p *string, env, def, usage string) {
	*p = envOr(env, def)
	s.add((*plainString)(p), env, usage, func() string { return *p })
}

// URL registers a URL or connection string setting: shown without its
// password (URL user info, password-like query parameters, key=value forms).
func (s *Set) URL(p *string, env, def, usage string) {
	*p = envOr(env, def)
	s.add(&maskedString{p: p}, env, usage, func() string { return MaskURL(*p) })
}

// Secret registers a setting that is never shown: -h prints no default,
// the start-up log says only whether it is set.
func (s *Set) Secret(p *string, env, usage string) {
	*p = envOr(env, "")
	s.add(&secretString{p: p}, env, usage, func() string {
		if *p == "" {
			return "(empty)"
		}
		return "(set, hidden)"
	})
}

// List registers a comma-separated list setting.
func (s *Set) List(p *[]string, env, def, usage string) {
	*p = SplitList(envOr(env, def))
	s.add((*listValue)(p), env, usage, func() string { return joinList(*p) })
}

// Int registers an integer setting.
func (s *Set) Int(p *int, env string, def int, usage string) {
	*p = def
	if v, ok := os.LookupEnv(env); ok {
		n, err := strconv.Atoi(v)
		if err != nil {
			s.errs = append(s.errs, fmt.Errorf("%s: %q is not an integer", env, v))
		} else {
			*p = n
		}
	}
	s.add((*intValue)(p), env, usage, func() string { return strconv.Itoa(*p) })
}

// Duration registers a duration setting (Go syntax: 250ms, 10s, 1h).
func (s *Set) Duration(p *time.Duration, env string, def time.Duration, usage string) {
	*p = def
	if v, ok := os.LookupEnv(env); ok {
		d, err := time.ParseDuration(v)
		if err != nil {
			s.errs = append(s.errs, fmt.Errorf("%s: %q is not a duration (e.g. 250ms, 10s)", env, v))
		} else {
			*p = d
		}
	}
	s.add((*durationValue)(p), env, usage, func() string { return p.String() })
}

// Bool registers a boolean setting.
func (s *Set) Bool(p *bool, env string, def bool, usage string) {
	*p = def
	if v, ok := os.LookupEnv(env); ok {
		b, err := strconv.ParseBool(v)
		if err != nil {
			s.errs = append(s.errs, fmt.Errorf("%s: %q is not a boolean", env, v))
		} else {
			*p = b
		}
	}
	s.add((*boolValue)(p), env, usage, func() string { return strconv.FormatBool(*p) })
}

// The flag.Value types. String must work on the zero value: the flag
// package calls it on a fresh value to decide whether a default is worth
// printing.

type plainString string

func (v *plainString) String() string {
	if v == nil {
		return ""
	}
	return string(*v)
}
func (v *plainString) Set(s string) error { *v = plainString(s); return nil }

type maskedString struct{ p *string }

func (v *maskedString) String() string {
	if v == nil || v.p == nil {
		return ""
	}
	return MaskURL(*v.p)
}
func (v *maskedString) Set(s string) error { *v.p = s; return nil }

type secretString struct{ p *string }

func (v *secretString) String() string     { return "" }
func (v *secretString) Set(s string) error { *v.p = s; return nil }

type listValue []string

func (v *listValue) String() string {
	if v == nil {
		return ""
	}
	return joinList(*v)
}
func (v *listValue) Set(s string) error { *v = SplitList(s); return nil }

func joinList(l []string) string { return strings.Join(l, ",") }

type intValue int

func (v *intValue) String() string {
	if v == nil {
		return "0"
	}
	return strconv.Itoa(int(*v))
}
func (v *intValue) Set(s string) error {
	n, err := strconv.Atoi(s)
	if err != nil {
		return errors.New("not an integer")
	}
	*v = intValue(n)
	return nil
}

type durationValue time.Duration

func (v *durationValue) String() string {
	if v == nil {
		return "0s"
	}
	return time.Duration(*v).String()
}
func (v *durationValue) Set(s string) error {
	d, err := time.ParseDuration(s)
	if err != nil {
		return errors.New("not a duration (e.g. 250ms, 10s)")
	}
	*v = durationValue(d)
	return nil
}

type boolValue bool

func (v *boolValue) String() string {
	if v == nil {
		return "false"
	}
	return strconv.FormatBool(bool(*v))
}
func (v *boolValue) Set(s string) error {
	b, err := strconv.ParseBool(s)
	if err != nil {
		return errors.New("not a boolean")
	}
	*v = boolValue(b)
	return nil
}
func (v *boolValue) IsBoolFlag() bool { return true }
