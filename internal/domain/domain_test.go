package domain

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestParseMoney(t *testing.T) {
	ok := map[string]Money{"0": 0, "19.99": 1999, "20": 2000, "0.5": 50, "1.50": 150, "1e2": 10000, "1.5e1": 1500, "-0": 0, "100000000000": MaxCents}
	for lit, want := range ok {
		got, reason := ParseMoney(lit)
		if reason != "" || got != want {
			t.Errorf("ParseMoney(%q) = %d, %q; want %d", lit, got, reason, want)
		}
	}
	bad := map[string]string{
		"":                      "is required",
		"-1":                    "must be >= 0",
		"1.999":                 "must have at most 2 decimals",
		"0.001":                 "must have at most 2 decimals",
		"1e999999999":           "is out of range",
		"100000000000.01":       "must be at most",
		"abc":                   "must be a number",
		strings.Repeat("9", 80): "is too long",
	}
	for lit, want := range bad {
		if _, reason := ParseMoney(lit); !strings.HasPrefix(reason, want) {
			t.Errorf("ParseMoney(%q) reason %q, want prefix %q", lit, reason, want)
		}
	}
}

func TestParseInt(t *testing.T) {
	if n, r := ParseInt("1.0", 0); r != "" || n != 1 {
		t.Errorf("1.0 → %d %q", n, r)
	}
	if n, r := ParseInt("9007199254740991", 0); r != "" || n != MaxSafeInteger {
		t.Errorf("max safe → %d %q", n, r)
	}
	for lit, want := range map[string]string{"1.5": "must be an integer", "-1": "must be >= 0", "9007199254740992": "must be at most", "": "is required"} {
		if _, r := ParseInt(lit, 0); !strings.HasPrefix(r, want) {
			t.Errorf("ParseInt(%q) reason %q, want %q", lit, r, want)
		}
	}
	if _, r := ParseInt("0", 1); r != "must be > 0" {
		t.Errorf("ParseInt(0, 1) reason %q", r)
	}
}

func TestMoneyJSON(t *testing.T) {
	for _, m := range []Money{0, 1, 10, 99, 100, 1999, 2000, 2050, MaxCents} {
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		var back Money
		if err := json.Unmarshal(b, &back); err != nil || back != m {
			t.Errorf("round trip %d via %s: %d %v", m, b, back, err)
		}
	}
	if s := Money(1905).String(); s != "19.05" {
		t.Errorf("19.05 formatted %q", s)
	}
}

func TestString(t *testing.T) {
	cases := []struct {
		v        string
		required bool
		want     string
	}{
		{"ok", true, ""},
		{"", true, "is required and must not be blank"},
		{"  ", true, "is required and must not be blank"},
		{"", false, ""},
		{"a\x00b", false, "must not contain NUL characters"},
		{"\xff", false, "must be valid UTF-8"},
		{strings.Repeat("é", 5), false, ""},
		{strings.Repeat("é", 6), false, "must be at most 5 characters"},
	}
	for _, c := range cases {
		var errs Errs
		String(&errs, "f", c.v, 0, 5, c.required)
		got := ""
		if len(errs) > 0 {
			got = errs[0].Reason
		}
		if got != c.want {
			t.Errorf("String(%q) = %q, want %q", c.v, got, c.want)
		}
	}
}
