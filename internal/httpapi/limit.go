package httpapi

import (
	"container/list"
	"fmt"
	"math"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	"golang.org/x/time/rate"

	"cqrsflow/internal/apierr"
	"cqrsflow/internal/auth"
)

// buckets are token buckets by key (client address or principal), at most
// max of them: the least recently used goes first, so a flood of new keys
// cannot grow memory. An evicted key that comes back starts with a full
// bucket, which only a flood of max other keys can cause.
type buckets struct {
	rps   rate.Limit
	burst int
	max   int

	mu    sync.Mutex
	order *list.List // front = most recently used; values are *bucket
	byKey map[string]*list.Element
}

type bucket struct {
	key string
	l   *rate.Limiter
}

func newBuckets(rps float64, burst, max int) *buckets {
	return &buckets{rps: rate.Limit(rps), burst: max1(burst), max: max1(max), order: list.New(), byKey: map[string]*list.Element{}}
}

func max1(n int) int { return max(n, 1) }

func (b *buckets) get(key string) *rate.Limiter {
	b.mu.Lock()
	defer b.mu.Unlock()
	if el, ok := b.byKey[key]; ok {
		b.order.MoveToFront(el)
		return el.Value.(*bucket).l
	}
	if b.order.Len() >= b.max {
		oldest := b.order.Back()
		b.order.Remove(oldest)
		delete(b.byKey, oldest.Value.(*bucket).key)
	}
	l := rate.NewLimiter(b.rps, b.burst)
	b.byKey[key] = b.order.PushFront(&bucket{key: key, l: l})
	return l
}

func (b *buckets) len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.order.Len()
}

// tooMany answers 429 with Retry-After for a wait of d.
func tooMany(c *gin.Context, code, message string, d time.Duration) {
	c.Header("Retry-After", strconv.Itoa(max(1, int(math.Ceil(d.Seconds())))))
	apierr.Abort(c, http.StatusTooManyRequests, code, message, nil)
}

// clientKey is the client address the per-client limit counts against:
// the address itself for IPv4, its /64 for IPv6 (one host usually holds a
// whole /64). gin's ClientIP trusts X-Forwarded-For only from
// TrustedProxies.
func clientKey(c *gin.Context) string {
	ip := net.ParseIP(c.ClientIP())
	if ip == nil {
		return c.ClientIP()
	}
	if v4 := ip.To4(); v4 != nil {
		return v4.String()
	}
	return ip.Mask(net.CIDRMask(64, 128)).String() + "/64"
}

// limitClients throttles requests without a valid credential per client
// address — anonymous reads, health and metrics scrapes, wrong keys and
// tokens — before authentication runs, so guessing keys or hammering the
// public routes costs the guesser, not the api. Requests that turn out to
// be authenticated are not charged (their principal has its own limit),
// but they too are refused while their address is over its budget: an
// address that floods is throttled as a whole. rps <= 0 disables it.
func limitClients(rps float64, burst, max int) gin.HandlerFunc {
	if rps <= 0 {
		return func(c *gin.Context) { c.Next() }
	}
	b := newBuckets(rps, burst, max)
	return func(c *gin.Context) {
		l := b.get(clientKey(c))
		if l.Tokens() < 1 {
			wait := time.Duration(float64(time.Second) * (1 - l.Tokens()) / rps)
			tooMany(c, "rate_limited", fmt.Sprintf("too many requests without a valid credential from this address (%g/s); retry after %s",
				rps, wait.Round(time.Millisecond)), wait)
			return
		}
		c.Next()
		if auth.FromContext(c) == nil {
			l.Reserve() // charged after the fact: may go into debt, which the next check sees
		}
	}
}

// limitPrincipals applies a token bucket per principal (rps <= 0
// disables it); anonymous requests pass (limitClients counts them).
func limitPrincipals(rps float64, burst, max int) gin.HandlerFunc {
	if rps <= 0 {
		return func(c *gin.Context) { c.Next() }
	}
	b := newBuckets(rps, burst, max)
	return func(c *gin.Context) {
		p := auth.FromContext(c)
		if p == nil {
			c.Next()
			return
		}
		r := b.get(p.ID).Reserve()
		if d := r.Delay(); d > 0 {
			r.Cancel()
			tooMany(c, "rate_limited", fmt.Sprintf("rate limit of %g requests/s exceeded; retry after %s", rps, d.Round(time.Millisecond)), d)
			return
		}
		c.Next()
	}
}

// ClientWaits bounds the read-your-writes waits in progress per client
// address (a query.WaitGate): a wait holds its request and polls
// Elasticsearch for up to 10 s, so one client must not hold many. The map
// only has entries for addresses with a wait in progress.
type ClientWaits struct {
	max int
	mu  sync.Mutex
	n   map[string]int
}

// NewClientWaits allows max waits at once per client address (<= 0: no bound).
func NewClientWaits(max int) *ClientWaits { return &ClientWaits{max: max, n: map[string]int{}} }

// Enter takes a slot of c's client address; leave gives it back.
func (w *ClientWaits) Enter(c *gin.Context) (leave func(), ok bool) {
	if w.max <= 0 {
		return func() {}, true
	}
	key := clientKey(c)
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.n[key] >= w.max {
		return nil, false
	}
	w.n[key]++
	var once sync.Once
	return func() {
		once.Do(func() {
			w.mu.Lock()
			defer w.mu.Unlock()
			if w.n[key]--; w.n[key] <= 0 {
				delete(w.n, key)
			}
		})
	}, true
}
