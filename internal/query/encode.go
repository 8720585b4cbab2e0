package query

import (
	"errors"
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/gin-gonic/gin"
)

// The answers of the read routes are appended to a pooled buffer by hand
// instead of marshalled by reflection: encoding a page of 20 products was
// a fifth of a search's CPU in the api. The bytes are exactly what
// encoding/json (gin's c.JSON) makes of the same values — field order,
// escaping, number and time formats — which FuzzEncodeMatchesEncodingJSON
// holds them to.

// jsonContentType is what gin's c.JSON sends.
const jsonContentType = "application/json; charset=utf-8"

// errNotFinite: a float JSON cannot carry. Decoding JSON never yields
// one; encoding/json refuses it too.
var errNotFinite = errors.New("json: unsupported value: NaN or ±Inf")

// encodable is a read-model representation the routes answer with.
type encodable interface {
	appendJSON(b []byte) ([]byte, error)
}

func (p *Product) appendJSON(b []byte) ([]byte, error) {
	b = append(b, `{"id":`...)
	b = appendString(b, p.ID)
	b = append(b, `,"name":`...)
	b = appendString(b, p.Name)
	b = append(b, `,"description":`...)
	b = appendString(b, p.Description)
	b = append(b, `,"price":`...)
	b, err := appendFloat64(b, p.Price)
	if err != nil {
		return b, err
	}
	if p.Currency != "" {
		b = append(b, `,"currency":`...)
		b = appendString(b, p.Currency)
	}
	b = append(b, `,"stock":`...)
	b = strconv.AppendInt(b, p.Stock, 10)
	b = append(b, `,"version":`...)
	b = strconv.AppendInt(b, p.Version, 10)
	if p.Deleted {
		b = append(b, `,"deleted":true`...)
	}
	return appendTimes(b, &p.CreatedAt, &p.UpdatedAt)
}

func (o *Order) appendJSON(b []byte) ([]byte, error) {
	b = append(b, `{"id":`...)
	b = appendString(b, o.ID)
	b = append(b, `,"user_id":`...)
	b = appendString(b, o.UserID)
	b = append(b, `,"product_id":`...)
	b = appendString(b, o.ProductID)
	b = append(b, `,"quantity":`...)
	b = strconv.AppendInt(b, o.Quantity, 10)
	b = append(b, `,"total_price":`...)
	b, err := appendFloat64(b, o.TotalPrice)
	if err != nil {
		return b, err
	}
	b = append(b, `,"status":`...)
	b = appendString(b, o.Status)
	b = append(b, `,"version":`...)
	b = strconv.AppendInt(b, o.Version, 10)
	if o.Deleted {
		b = append(b, `,"deleted":true`...)
	}
	return appendTimes(b, &o.CreatedAt, &o.UpdatedAt)
}

// appendPage appends a Page of items.
func appendPage[T any, P interface {
	*T
	encodable
}](b []byte, pg *Page[T]) ([]byte, error) {
	b = append(b, `{"items":[`...)
	var err error
	for i := range pg.Items {
		if i > 0 {
			b = append(b, ',')
		}
		if b, err = P(&pg.Items[i]).appendJSON(b); err != nil {
			return b, err
		}
	}
	b = append(b, `],"page":`...)
	b = strconv.AppendInt(b, int64(pg.Page), 10)
	b = append(b, `,"limit":`...)
	b = strconv.AppendInt(b, int64(pg.Limit), 10)
	b = append(b, `,"total":`...)
	b = strconv.AppendInt(b, int64(pg.Total), 10)
	return append(b, '}'), nil
}

// appendTimes appends created_at and updated_at as time.Time's
// MarshalJSON writes them (RFC 3339 with nanoseconds, in quotes) and
// closes the object.
func appendTimes(b []byte, created, updated *time.Time) ([]byte, error) {
	var err error
	b = append(b, `,"created_at":"`...)
	if b, err = created.AppendText(b); err != nil {
		return b, err
	}
	b = append(b, `","updated_at":"`...)
	if b, err = updated.AppendText(b); err != nil {
		return b, err
	}
	return append(b, `"}`...), nil
}

// appendFloat64 appends f as encoding/json does: the shortest
// representation that reads back as f, in exponent form only below 1e-6
// or from 1e21, with the exponent's leading zero dropped (1e-07 → 1e-7).
func appendFloat64(b []byte, f float64) ([]byte, error) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return b, errNotFinite
	}
	format := byte('f')
	if abs := math.Abs(f); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b, nil
}

// appendString appends s as a quoted JSON string escaped as encoding/json
// escapes it: quotes, backslashes and control characters; <, > and & as
// \u003c, \u003e, \u0026; U+2028 and U+2029; invalid UTF-8 as \ufffd.
func appendString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// bufPool holds answer buffers; one larger than maxPooled (a page of
// long descriptions) is left to the garbage collector.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 16<<10); return &b }}

const maxPooled = 1 << 20

// respond writes the 200 answer that encode appends. An encoding failure
// (a float JSON cannot carry) is the caller's to report.
func respond(c *gin.Context, encode func([]byte) ([]byte, error)) error {
	bp := bufPool.Get().(*[]byte)
	b, err := encode((*bp)[:0])
	if err == nil {
		c.Data(http.StatusOK, jsonContentType, b)
	}
	if cap(b) <= maxPooled {
		*bp = b[:0]
		bufPool.Put(bp)
	}
	return err
}
