package query

import (
	"encoding/json"
	"math"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
)

// sameAsEncodingJSON fails unless appended is what encoding/json makes of v.
func sameAsEncodingJSON(t *testing.T, v any, appended []byte, err error) {
	t.Helper()
	want, werr := json.Marshal(v)
	if (err != nil) != (werr != nil) {
		t.Fatalf("error %v, encoding/json says %v", err, werr)
	}
	if werr == nil && string(appended) != string(want) {
		t.Fatalf("appended\n%s\nencoding/json\n%s", appended, want)
	}
}

var hostileStrings = []string{
	"", "plain", `quote " backslash \ slash /`, "<script>&amp;</script>", "\x00\x01\b\f\n\r\t\x1f\x7f", "é ☃ 𝄞",
	"\u2028\u2029", "bad \xff\xfe utf8 \xc3", "\xed\xa0\x80 surrogate", strings.Repeat("x", 300),
}

var edgeFloats = []float64{0, math.Copysign(0, -1), 1, -1, 19.99, 0.1, 1e-6, 9.999e-7, 1e-7, 1e20, 1e21, 123456789.125,
	math.MaxFloat64, math.SmallestNonzeroFloat64, -2.5e-300, math.NaN(), math.Inf(1), math.Inf(-1)}

var edgeTimes = []time.Time{{}, time.Date(2026, 11, 27, 16, 51, 29, 275798141, time.UTC), time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
	time.Date(1999, 12, 31, 23, 59, 59, 100, time.FixedZone("", 2*3600+30*60)), time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC),
	time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC)}

func TestEncodeMatchesEncodingJSON(t *testing.T) {
	for i, s := range hostileStrings {
		f := edgeFloats[i%len(edgeFloats)]
		tm := edgeTimes[i%len(edgeTimes)]
		p := Product{ID: s, Name: s, Description: s + s, Price: f, Currency: s, Stock: int64(i) - 3, Version: int64(i), Deleted: i%2 == 0, CreatedAt: tm, UpdatedAt: tm}
		b, err := p.appendJSON(nil)
		sameAsEncodingJSON(t, &p, b, err)
		o := Order{ID: s, UserID: s, ProductID: s, Quantity: int64(i), TotalPrice: f, Status: s, Version: 1, Deleted: i%3 == 0, CreatedAt: tm, UpdatedAt: tm}
		b, err = o.appendJSON(nil)
		sameAsEncodingJSON(t, &o, b, err)
	}
	for _, f := range edgeFloats {
		p := Product{Price: f}
		b, err := p.appendJSON(nil)
		sameAsEncodingJSON(t, &p, b, err)
	}
	for _, tm := range edgeTimes {
		p := Product{CreatedAt: tm, UpdatedAt: tm}
		b, err := p.appendJSON(nil)
		sameAsEncodingJSON(t, &p, b, err)
	}
	pages := []Page[Product]{{Items: []Product{}, Page: 1, Limit: 20}, {Items: []Product{{ID: "a", Price: 1.5}, {ID: "b<"}}, Page: 3, Limit: 2, Total: 99}}
	for _, pg := range pages {
		b, err := appendPage(nil, &pg)
		sameAsEncodingJSON(t, pg, b, err)
	}
	op := Page[Order]{Items: []Order{{ID: "o", Status: "paid"}}, Page: 1, Limit: 1, Total: 1}
	b, err := appendPage(nil, &op)
	sameAsEncodingJSON(t, op, b, err)
}

func FuzzEncodeMatchesEncodingJSON(f *testing.F) {
	for i, s := range hostileStrings {
		f.Add(s, edgeFloats[i%len(edgeFloats)], int64(i), int64(1700000000+i), int64(i*1000))
	}
	f.Fuzz(func(t *testing.T, s string, price float64, n, sec, nsec int64) {
		tm := time.Unix(sec, nsec).UTC()
		p := Product{ID: s, Name: s, Description: s, Price: price, Currency: s, Stock: n, Version: -n, Deleted: n%2 == 0, CreatedAt: tm, UpdatedAt: tm.Add(time.Duration(n))}
		b, err := p.appendJSON(nil)
		sameAsEncodingJSON(t, &p, b, err)
		o := Order{ID: s, UserID: s, ProductID: s, Quantity: n, TotalPrice: price, Status: s, CreatedAt: tm, UpdatedAt: tm}
		b, err = o.appendJSON(nil)
		sameAsEncodingJSON(t, &o, b, err)
		pg := Page[Product]{Items: []Product{p, p}, Page: int(n), Limit: 2, Total: int(sec)}
		b, err = appendPage(nil, &pg)
		sameAsEncodingJSON(t, pg, b, err)
	})
}

// filled sets every field of the struct v points to to a non-zero value,
// so a field the hand-written encoder leaves out shows.
func filled(t *testing.T, v any) {
	t.Helper()
	rv := reflect.ValueOf(v).Elem()
	for i := range rv.NumField() {
		f := rv.Field(i)
		switch f.Kind() {
		case reflect.String:
			f.SetString("x" + rv.Type().Field(i).Name)
		case reflect.Int64, reflect.Int:
			f.SetInt(int64(i + 1))
		case reflect.Float64:
			f.SetFloat(float64(i) + 0.5)
		case reflect.Bool:
			f.SetBool(true)
		case reflect.Struct:
			if f.Type() != reflect.TypeOf(time.Time{}) {
				t.Fatalf("%s.%s: a field type the test does not fill", rv.Type().Name(), rv.Type().Field(i).Name)
			}
			f.Set(reflect.ValueOf(time.Date(2026, 1, 2, 3, 4, 5, i, time.UTC)))
		default:
			t.Fatalf("%s.%s: a field type the test does not fill", rv.Type().Name(), rv.Type().Field(i).Name)
		}
	}
}

// Every field of the read models is encoded: a field added to Product or
// Order but not to its appendJSON fails here.
func TestEncodeEveryField(t *testing.T) {
	var p Product
	filled(t, &p)
	b, err := p.appendJSON(nil)
	sameAsEncodingJSON(t, &p, b, err)
	var o Order
	filled(t, &o)
	b, err = o.appendJSON(nil)
	sameAsEncodingJSON(t, &o, b, err)
}

// respond sends what gin's c.JSON sends: status, content type, body.
func TestRespondIsCJSON(t *testing.T) {
	gin.SetMode(gin.TestMode)
	p := Product{ID: "a&b", Name: "x", Price: 2.5, CreatedAt: edgeTimes[1]}
	viaGin := httptest.NewRecorder()
	c, _ := gin.CreateTestContext(viaGin)
	c.JSON(http.StatusOK, &p)
	ours := httptest.NewRecorder()
	c, _ = gin.CreateTestContext(ours)
	if err := respond(c, p.appendJSON); err != nil {
		t.Fatal(err)
	}
	if ours.Code != viaGin.Code || ours.Header().Get("Content-Type") != viaGin.Header().Get("Content-Type") || ours.Body.String() != viaGin.Body.String() {
		t.Errorf("respond: %d %q %s\nc.JSON: %d %q %s", ours.Code, ours.Header().Get("Content-Type"), ours.Body,
			viaGin.Code, viaGin.Header().Get("Content-Type"), viaGin.Body)
	}
	// A value JSON cannot carry is an error, and nothing is written.
	bad := Product{Price: math.NaN()}
	w := httptest.NewRecorder()
	c, _ = gin.CreateTestContext(w)
	if err := respond(c, bad.appendJSON); err == nil || c.Writer.Written() {
		t.Errorf("NaN: err %v, written %v", err, c.Writer.Written())
	}
}
