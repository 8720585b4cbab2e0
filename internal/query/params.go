package query

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"
)

// ParseID validates an aggregate id from the path. The api issues UUIDs,
// so anything else is a 400 naming id (not a 404: the client sent
// something that cannot be an id, and nothing is looked up); upper-case
// hex reads as the canonical lower-case form. The reason never quotes the
// value, which may be 10 000 characters or carry control bytes.
func ParseID(s string) (string, error) {
	u, err := uuid.Parse(s)
	if err != nil || len(s) != 36 {
		return "", &fieldError{"id", "must be a UUID as returned by the create (8-4-4-4-12 hex digits)"}
	}
	return u.String(), nil
}

// Limits of the text parameters.
const (
	MaxUserID = 100 // as order.MaxID
)

// textParam validates a text parameter: valid UTF-8, no control
// characters, 1 to max bytes when present.
func textParam(c *gin.Context, name string, max int) (string, error) {
	s := c.Query(name)
	switch {
	case s == "":
		return "", nil
	case len(s) > max:
		return "", &fieldError{name, fmt.Sprintf("longer than %d bytes", max)}
	case !utf8.ValidString(s):
		return "", &fieldError{name, "is not valid UTF-8"}
	case strings.IndexFunc(s, unicode.IsControl) >= 0:
		return "", &fieldError{name, "must not contain control characters"}
	}
	return s, nil
}

// quote quotes a parameter value for an error message, cut to 40 bytes:
// the answer names the problem without echoing a hostile value whole.
func quote(s string) string {
	if len(s) > 40 {
		return strconv.Quote(s[:40]) + "…"
	}
	return strconv.Quote(s)
}

// Paging is a validated page/limit pair.
type Paging struct {
	Page, Limit int
}

func intParam(c *gin.Context, name string, def, lo, hi int) (int, error) {
	s, ok := c.GetQuery(name)
	if !ok || s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, &fieldError{name, fmt.Sprintf("%s is not an integer", quote(s))}
	}
	if n < lo || n > hi {
		return 0, &fieldError{name, fmt.Sprintf("must be between %d and %d, got %d", lo, hi, n)}
	}
	return n, nil
}

// ParsePaging validates page (>= 1) and limit (1..100, default 20); the
// window page*limit must stay within 10000.
func ParsePaging(c *gin.Context) (Paging, error) {
	limit, err := intParam(c, "limit", DefaultLimit, 1, MaxLimit)
	if err != nil {
		return Paging{}, err
	}
	page, err := intParam(c, "page", 1, 1, maxWindow)
	if err != nil {
		return Paging{}, err
	}
	if page*limit > maxWindow {
		return Paging{}, &fieldError{"page", fmt.Sprintf("page*limit must be <= %d", maxWindow)}
	}
	return Paging{Page: page, Limit: limit}, nil
}

func floatParam(c *gin.Context, name string) (*float64, error) {
	s, ok := c.GetQuery(name)
	if !ok || s == "" {
		return nil, nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f < 0 || math.IsNaN(f) || math.IsInf(f, 0) {
		return nil, &fieldError{name, fmt.Sprintf("%s is not a number >= 0", quote(s))}
	}
	return &f, nil
}

// SearchParams are the validated parameters of /v1/products/search.
type SearchParams struct {
	Q                  string
	MinPrice, MaxPrice *float64
	InStock            bool
	Sort               string
	Paging
}

// ParseSearch validates the search parameters.
func ParseSearch(c *gin.Context) (SearchParams, error) {
	var p SearchParams
	var err error
	if p.Paging, err = ParsePaging(c); err != nil {
		return p, err
	}
	if p.Q, err = textParam(c, "q", maxQueryLen); err != nil {
		return p, err
	}
	if p.Q == "" {
		return p, &fieldError{"q", "is required"}
	}
	if p.MinPrice, err = floatParam(c, "min_price"); err != nil {
		return p, err
	}
	if p.MaxPrice, err = floatParam(c, "max_price"); err != nil {
		return p, err
	}
	if p.MinPrice != nil && p.MaxPrice != nil && *p.MinPrice > *p.MaxPrice {
		return p, &fieldError{"max_price", "must be >= min_price"}
	}
	if s, ok := c.GetQuery("in_stock"); ok && s != "" {
		if p.InStock, err = strconv.ParseBool(s); err != nil {
			return p, &fieldError{"in_stock", fmt.Sprintf("%s is not a boolean", quote(s))}
		}
	}
	p.Sort = c.Query("sort")
	if _, ok := sortJSON[p.Sort]; !ok {
		return p, &fieldError{"sort", fmt.Sprintf("%s is not one of price, -price, name, -name", quote(p.Sort))}
	}
	return p, nil
}

// Freshness is what a get by id asks of the read model: at least
// MinVersion (0: any), waiting up to Wait for it.
type Freshness struct {
	MinVersion int64
	Wait       time.Duration
}

// ParseFreshness validates min_version (an integer >= 1) and wait (a Go
// duration between 0s and MaxWait).
func ParseFreshness(c *gin.Context) (Freshness, error) {
	minVersion, err := intParam(c, "min_version", 0, 1, 1<<62)
	if err != nil {
		return Freshness{}, err
	}
	f := Freshness{MinVersion: int64(minVersion)}
	if s, ok := c.GetQuery("wait"); ok && s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d < 0 || d > MaxWait {
			return Freshness{}, &fieldError{"wait", fmt.Sprintf("%s is not a duration between 0s and %s", quote(s), MaxWait)}
		}
		f.Wait = d
	}
	return f, nil
}
