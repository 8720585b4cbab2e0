package config

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestMaskURL(t *testing.T) {
	for _, tc := range []struct{ in, secret string }{
		{"postgres://u:hunter2@127.0.0.1:5432/db", "hunter2"},
		{"postgres://u:hun%40ter2@h/db?sslmode=verify-full", "hun%40ter2"},
		{"postgres://u:p@ss@h/db", "p@ss"},
		{"postgres://u@h/db?password=hunter2&sslmode=disable", "hunter2"},
		{"postgres://h/db?sslpassword=hunter2", "hunter2"},
		{"host=127.0.0.1 user=u password=hunter2 dbname=d", "hunter2"},
		{"host=127.0.0.1 password='hun ter2' dbname=d", "hun ter2"},
		{"host=h PASSWORD = hunter2", "hunter2"},
		{"https://elastic:hunter2@es:9200", "hunter2"},
		{"http://es:9200/?api_key=hunter2", "hunter2"},
	} {
		got := MaskURL(tc.in)
		if strings.Contains(got, tc.secret) || !strings.Contains(got, "xxxxx") {
			t.Errorf("MaskURL(%q) = %q: reveals %q or masks nothing", tc.in, got, tc.secret)
		}
	}
	for _, plain := range []string{"postgres://u@127.0.0.1:5432/db?sslmode=disable", "http://127.0.0.1:19200", "127.0.0.1:19092"} {
		if got := MaskURL(plain); got != plain {
			t.Errorf("MaskURL(%q) = %q, want it unchanged", plain, got)
		}
	}
}

func TestSetDefaultsEnvFlagsAndErrors(t *testing.T) {
	t.Setenv("T_INT", "seven")
	t.Setenv("T_DUR", "2s")
	t.Setenv("T_URL", "postgres://u:envsecret@h/db")
	t.Setenv("T_SECRET", "topsecret")
	s := NewSet("t")
	var (
		n      int
		d      time.Duration
		b      bool
		u, sec string
		l      []string
	)
	s.Int(&n, "T_INT", 3, "n")
	s.Duration(&d, "T_DUR", time.Second, "d")
	s.Bool(&b, "T_BOOL", true, "b")
	s.URL(&u, "T_URL", "", "u")
	s.Secret(&sec, "T_SECRET", "s")
	s.List(&l, "T_LIST", "a, b,,c", "l")
	if err := s.Parse([]string{"-t-bool=false"}); err != nil {
		t.Fatal(err)
	}
	if n != 3 || d != 2*time.Second || b || u != "postgres://u:envsecret@h/db" || sec != "topsecret" || strings.Join(l, "|") != "a|b|c" {
		t.Fatalf("values: n=%d d=%s b=%v u=%q sec=%q l=%q", n, d, b, u, sec, l)
	}
	if err := s.Err(); err == nil || !strings.Contains(err.Error(), "T_INT") {
		t.Fatalf("Err() = %v, want the malformed T_INT", err)
	}
	logged := fmt.Sprint(s.LogAttrs()...)
	if strings.Contains(logged, "envsecret") || strings.Contains(logged, "topsecret") || !strings.Contains(logged, "t_dur=2s") {
		t.Fatalf("LogAttrs: %s", logged)
	}
	var usage strings.Builder
	s.FlagSet().SetOutput(&usage)
	s.FlagSet().PrintDefaults()
	if strings.Contains(usage.String(), "envsecret") || strings.Contains(usage.String(), "topsecret") || !strings.Contains(usage.String(), "(env T_SECRET)") {
		t.Fatalf("usage: %s", usage.String())
	}
}
