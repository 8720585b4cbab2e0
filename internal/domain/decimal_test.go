package domain

import (
	"fmt"
	"testing"
)

// The fast path must give the same value and reason for every literal as
// the big.Rat readings: ratMoney (ParseMoney's own slow path) and ratInt,
// ParseInt as it was before plainDecimal.
func ratInt(lit string, min int64) (int64, string) {
	r, reason := parseRat(lit)
	if reason != "" {
		return 0, reason
	}
	if !r.IsInt() {
		return 0, "must be an integer"
	}
	if !r.Num().IsInt64() || r.Num().Int64() > MaxSafeInteger {
		return 0, fmt.Sprintf("must be at most %d", int64(MaxSafeInteger))
	}
	n := r.Num().Int64()
	if n < min {
		if min == 1 {
			return 0, "must be > 0"
		}
		return 0, fmt.Sprintf("must be >= %d", min)
	}
	return n, ""
}

var literals = []string{"0", "-0", "-0.00", "00", "01", "1", "1.", ".5", "+1", "-", "1.0", "1.50", "19.99", "19.990", "1.999", "0.001",
	"-0.001", "-1", "-1.5", "100000000000", "100000000000.00", "100000000000.01", "99999999999.99", "999999999999999", "9999999999999999",
	"123456789012345", "12345678901234.5", "1234567890123456", "9007199254740991", "9007199254740992", "9223372036854775807",
	"9223372036854775808", "1e2", "1E2", "1.5e1", "1e-2", "1e999", "0x10", "1_000", " 1", "1 ", "", "abc", "1.2.3", "--1", "0.10000000000000"}

func sameAsRat(t *testing.T, lit string) {
	t.Helper()
	if m, r := ParseMoney(lit); true {
		wm, wr := ratMoney(lit)
		if m != wm || r != wr {
			t.Errorf("ParseMoney(%q) = %d %q, big.Rat %d %q", lit, m, r, wm, wr)
		}
	}
	for _, min := range []int64{0, 1, 5} {
		n, r := ParseInt(lit, min)
		wn, wr := ratInt(lit, min)
		if n != wn || r != wr {
			t.Errorf("ParseInt(%q, %d) = %d %q, big.Rat %d %q", lit, min, n, r, wn, wr)
		}
	}
}

func TestPlainDecimalIsBigRat(t *testing.T) {
	fast := 0
	for _, lit := range literals {
		sameAsRat(t, lit)
		if _, _, ok := plainDecimal(lit); ok {
			fast++
		}
	}
	if fast < 20 {
		t.Errorf("only %d literals take the fast path", fast)
	}
}

func FuzzPlainDecimalIsBigRat(f *testing.F) {
	for _, lit := range literals {
		f.Add(lit)
	}
	f.Fuzz(func(t *testing.T, lit string) { sameAsRat(t, lit) })
}
