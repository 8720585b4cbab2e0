// Package domain holds what the aggregate packages (product, order) share:
// field-level validation errors, domain-rule errors and the parsing of the
// numeric literals commands carry. It is pure: no SQL, no HTTP.
package domain

import (
	"errors"
	"fmt"
	"math/big"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Event is a domain event decided by an aggregate: its type and its payload
// (a struct that marshals to the event's JSON schema).
type Event struct {
	Type          string
	SchemaVersion int
	Payload       any
}

// FieldError says which input field is wrong and why.
type FieldError struct {
	Field  string `json:"field"`
	Reason string `json:"reason"`
}

// ValidationError lists every invalid field of a command (HTTP 400).
type ValidationError struct {
	Fields []FieldError
}

func (e *ValidationError) Error() string {
	parts := make([]string, len(e.Fields))
	for i, f := range e.Fields {
		parts[i] = f.Field + ": " + f.Reason
	}
	return "invalid command: " + strings.Join(parts, "; ")
}

// Errs collects field errors.
type Errs []FieldError

// Add records that field is invalid for reason.
func (e *Errs) Add(field, reason string) { *e = append(*e, FieldError{Field: field, Reason: reason}) }

// Err returns a *ValidationError, or nil when nothing was recorded.
func (e Errs) Err() error {
	if len(e) == 0 {
		return nil
	}
	return &ValidationError{Fields: e}
}

// ErrRule marks a command that is well-formed but breaks a domain rule
// (illegal state transition, deleted aggregate…): HTTP 422.
var ErrRule = errors.New("domain rule violated")

// RuleError is an ErrRule with a machine-readable code.
type RuleError struct {
	Code    string
	Message string
}

func (e *RuleError) Error() string { return e.Message }

// Is makes errors.Is(err, ErrRule) true.
func (e *RuleError) Is(target error) bool { return target == ErrRule }

// ErrNotFound: the aggregate does not exist (HTTP 404).
var ErrNotFound = errors.New("aggregate not found")

// Limits shared by the aggregates.
const (
	// MaxSafeInteger is the largest integer every JSON consumer (float64)
	// represents exactly: 2^53-1.
	MaxSafeInteger = 1<<53 - 1
	// MaxCents bounds money amounts (100 billion) so cents fit exactly.
	MaxCents = 100_000_000_000 * 100
)

// String checks a text field: valid UTF-8, no NUL (PostgreSQL JSONB
// rejects \u0000), rune count within [min, max].
func String(errs *Errs, field, v string, min, max int, required bool) {
	n := utf8.RuneCountInString(v)
	switch {
	case required && strings.TrimSpace(v) == "":
		errs.Add(field, "is required and must not be blank")
	case !utf8.ValidString(v):
		errs.Add(field, "must be valid UTF-8")
	case strings.ContainsRune(v, 0):
		errs.Add(field, "must not contain NUL characters")
	case n < min:
		errs.Add(field, fmt.Sprintf("must be at least %d characters", min))
	case n > max:
		errs.Add(field, fmt.Sprintf("must be at most %d characters", max))
	}
}

// Money is an amount in cents.
type Money int64

// String formats the amount as a decimal (19.99, 20, 0.5 → "0.5").
func (m Money) String() string {
	s := strconv.FormatInt(int64(m)/100, 10)
	c := int64(m) % 100
	switch {
	case c == 0:
		return s
	case c%10 == 0:
		return s + "." + strconv.FormatInt(c/10, 10)
	default:
		return fmt.Sprintf("%s.%02d", s, c)
	}
}

// MarshalJSON writes the amount as a JSON number with at most 2 decimals.
func (m Money) MarshalJSON() ([]byte, error) { return []byte(m.String()), nil }

// UnmarshalJSON reads a JSON number with at most 2 decimals.
func (m *Money) UnmarshalJSON(b []byte) error {
	v, reason := ParseMoney(string(b))
	if reason != "" {
		return errors.New("money " + reason)
	}
	*m = v
	return nil
}

// maxLiteral bounds the length of a numeric literal we parse, and
// maxExponent its exponent, so a hostile 1e999999999 cannot make big.Rat
// allocate without bound.
const (
	maxLiteral  = 64
	maxExponent = 30
)

func parseRat(lit string) (*big.Rat, string) {
	if lit == "" {
		return nil, "is required"
	}
	if len(lit) > maxLiteral {
		return nil, "is too long a number"
	}
	if i := strings.IndexAny(lit, "eE"); i >= 0 {
		e, err := strconv.Atoi(strings.TrimPrefix(lit[i+1:], "+"))
		if err != nil || e > maxExponent || e < -maxExponent {
			return nil, "is out of range"
		}
	}
	for i := 0; i < len(lit); i++ {
		c := lit[i]
		if !(c >= '0' && c <= '9' || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E') {
			return nil, "must be a number"
		}
	}
	r, ok := new(big.Rat).SetString(lit)
	if !ok {
		return nil, "must be a number"
	}
	return r, ""
}

var hundred = big.NewRat(100, 1)

// plainDigits bounds the digits plainDecimal reads, so that the value
// times 100 stays far inside int64.
const plainDigits = 15

// plainDecimal reads the common literal -?(0|[1-9][0-9]*)(\.[0-9]+)? of at
// most plainDigits digits as m / 10^scale, trailing zeros of the fraction
// dropped (1.50 → 15, 1): exactly the value big.Rat reads, without its
// allocations. Any other literal (exponent, leading zero, more digits,
// not a number) is false, and parseRat reads or refuses it.
func plainDecimal(lit string) (m int64, scale int, ok bool) {
	i, neg := 0, false
	if i < len(lit) && lit[i] == '-' {
		i, neg = 1, true
	}
	start, digits := i, 0
	for ; i < len(lit) && lit[i] >= '0' && lit[i] <= '9'; i++ {
		m = m*10 + int64(lit[i]-'0')
		digits++
	}
	if i == start || (lit[start] == '0' && i-start > 1) {
		return 0, 0, false
	}
	if i < len(lit) && lit[i] == '.' {
		i++
		fs := i
		for ; i < len(lit) && lit[i] >= '0' && lit[i] <= '9'; i++ {
			m = m*10 + int64(lit[i]-'0')
			digits++
			scale++
		}
		if i == fs {
			return 0, 0, false
		}
	}
	if i != len(lit) || digits > plainDigits {
		return 0, 0, false
	}
	for scale > 0 && m%10 == 0 {
		m /= 10
		scale--
	}
	if neg {
		m = -m
	}
	return m, scale, true
}

// ParseMoney parses a JSON number literal that must be >= 0 with at most
// two decimals. It returns a reason ("" when valid).
func ParseMoney(lit string) (Money, string) {
	if m, scale, ok := plainDecimal(lit); ok {
		switch {
		case m < 0:
			return 0, "must be >= 0"
		case scale > 2:
			return 0, "must have at most 2 decimals"
		}
		for ; scale < 2; scale++ {
			m *= 10
		}
		if m > MaxCents {
			return 0, fmt.Sprintf("must be at most %d", MaxCents/100)
		}
		return Money(m), ""
	}
	return ratMoney(lit)
}

// ratMoney is ParseMoney through big.Rat: any literal JSON allows
// (exponents, more digits than plainDecimal takes). The tests hold the
// fast path to it.
func ratMoney(lit string) (Money, string) {
	r, reason := parseRat(lit)
	if reason != "" {
		return 0, reason
	}
	if r.Sign() < 0 {
		return 0, "must be >= 0"
	}
	c := new(big.Rat).Mul(r, hundred)
	if !c.IsInt() {
		return 0, "must have at most 2 decimals"
	}
	if !c.Num().IsInt64() || c.Num().Int64() > MaxCents {
		return 0, fmt.Sprintf("must be at most %d", MaxCents/100)
	}
	return Money(c.Num().Int64()), ""
}

// ParseInt parses a JSON number literal that must be an integer within
// [min, MaxSafeInteger]. It returns a reason ("" when valid).
func ParseInt(lit string, min int64) (int64, string) {
	n, scale, ok := plainDecimal(lit)
	if !ok {
		r, reason := parseRat(lit)
		if reason != "" {
			return 0, reason
		}
		if !r.IsInt() || !r.Num().IsInt64() {
			n, scale = 0, 1 // not an integer, or beyond int64: reported below
			if r.IsInt() {
				n, scale = MaxSafeInteger+1, 0
			}
		} else {
			n = r.Num().Int64()
		}
	}
	if scale > 0 {
		return 0, "must be an integer"
	}
	if n > MaxSafeInteger {
		return 0, fmt.Sprintf("must be at most %d", int64(MaxSafeInteger))
	}
	if n < min {
		if min == 1 {
			return 0, "must be > 0"
		}
		return 0, fmt.Sprintf("must be >= %d", min)
	}
	return n, ""
}
