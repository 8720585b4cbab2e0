package httpapi

import (
	"bufio"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"golang.org/x/time/rate"

	"cqrsflow/internal/apierr"
	"cqrsflow/internal/config"
)

// Keys holds the accepted API keys as SHA-256 hashes with the id of their
// principal. Keys themselves are never kept nor logged.
type Keys struct {
	entries []keyEntry
}

type keyEntry struct {
	id   string
	hash [sha256.Size]byte
}

// ParseKeys reads keys from a comma list ("id:key" or "key") and from a
// file with one key (or "id:key") per line; blank lines and lines
// starting with # are ignored. A key without id gets the principal
// "key-" + the first 8 hex digits of its SHA-256.
func ParseKeys(list, file string) (*Keys, error) {
	k := &Keys{}
	var errs []error
	add := func(item, where string) {
		id, key, found := strings.Cut(item, ":")
		if !found {
			key, id = item, ""
		}
		id, key = strings.TrimSpace(id), strings.TrimSpace(key)
		if len(key) < 16 {
			errs = append(errs, fmt.Errorf("%s: an API key must be at least 16 characters", where))
			return
		}
		h := sha256.Sum256([]byte(key))
		if id == "" {
			id = "key-" + hex.EncodeToString(h[:4])
		}
		k.entries = append(k.entries, keyEntry{id: id, hash: h})
	}
	for i, item := range config.SplitList(list) {
		add(item, fmt.Sprintf("API_KEYS item %d", i+1))
	}
	if file != "" {
		f, err := os.Open(file)
		if err != nil {
			errs = append(errs, fmt.Errorf("API_KEYS_FILE: %w", err))
		} else {
			sc := bufio.NewScanner(f)
			for n := 1; sc.Scan(); n++ {
				line := strings.TrimSpace(sc.Text())
				if line == "" || strings.HasPrefix(line, "#") {
					continue
				}
				add(line, fmt.Sprintf("%s line %d", file, n))
			}
			if err := sc.Err(); err != nil {
				errs = append(errs, fmt.Errorf("reading %s: %w", file, err))
			}
			f.Close()
		}
	}
	if len(errs) == 0 && len(k.entries) == 0 {
		errs = append(errs, errors.New("no API keys configured (API_KEYS or API_KEYS_FILE)"))
	}
	return k, errors.Join(errs...)
}

// IDs lists the principals (safe to log).
func (k *Keys) IDs() []string {
	out := make([]string, len(k.entries))
	for i, e := range k.entries {
		out[i] = e.id
	}
	return out
}

// Authenticate returns the principal of a presented key. Every stored
// hash is compared in constant time, whatever matches.
func (k *Keys) Authenticate(presented string) (string, bool) {
	h := sha256.Sum256([]byte(presented))
	id := ""
	for _, e := range k.entries {
		if subtle.ConstantTimeCompare(h[:], e.hash[:]) == 1 {
			id = e.id
		}
	}
	return id, id != ""
}

const principalKey = "cqrsflow.principal"

// authenticate requires Authorization: Bearer <key>.
func authenticate(keys *Keys) gin.HandlerFunc {
	return func(c *gin.Context) {
		h := c.GetHeader("Authorization")
		scheme, token, _ := strings.Cut(h, " ")
		if h == "" {
			c.Header("WWW-Authenticate", `Bearer realm="cqrsflow"`)
			apierr.Abort(c, http.StatusUnauthorized, "unauthenticated", "missing Authorization: Bearer <api key>", nil)
			return
		}
		id, ok := "", false
		if strings.EqualFold(scheme, "Bearer") {
			id, ok = keys.Authenticate(strings.TrimSpace(token))
		}
		if !ok {
			c.Header("WWW-Authenticate", `Bearer realm="cqrsflow", error="invalid_token"`)
			apierr.Abort(c, http.StatusUnauthorized, "unauthenticated", "invalid API key", nil)
			return
		}
		c.Set(principalKey, id)
		c.Next()
	}
}

// rateLimit applies a token bucket per principal (rps <= 0 disables it).
func rateLimit(keys *Keys, rps float64, burst int) gin.HandlerFunc {
	if rps <= 0 {
		return func(c *gin.Context) { c.Next() }
	}
	if burst < 1 {
		burst = 1
	}
	// One limiter per known principal, built up front: the map is read-only.
	limiters := map[string]*rate.Limiter{}
	for _, id := range keys.IDs() {
		limiters[id] = rate.NewLimiter(rate.Limit(rps), burst)
	}
	return func(c *gin.Context) {
		l := limiters[c.GetString(principalKey)]
		if l == nil {
			c.Next()
			return
		}
		r := l.Reserve()
		if d := r.Delay(); d > 0 {
			r.Cancel()
			secs := int(math.Ceil(d.Seconds()))
			if secs < 1 {
				secs = 1
			}
			c.Header("Retry-After", strconv.Itoa(secs))
			apierr.Abort(c, http.StatusTooManyRequests, "rate_limited",
				fmt.Sprintf("rate limit of %g requests/s exceeded; retry after %s", rps, d.Round(time.Millisecond)), nil)
			return
		}
		c.Next()
	}
}
