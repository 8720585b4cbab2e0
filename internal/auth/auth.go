// Package auth says who is calling the api and what they may do: API keys
// for services (hashed, compared in constant time) and OpenID Connect
// bearer tokens for end users (signature, issuer, audience and lifetime
// checked), both turned into a Principal with scopes and, for end users,
// the user ids it may act for.
//
// Scopes: read (the GET routes), write (the commands), admin (both, and
// every user's orders). A principal bound to users (an API key with
// user=…, or any token without admin: its sub) sees and changes only the
// orders of those users; it never writes the catalogue. The HTTP layer
// (internal/httpapi) decides per route which scope is needed; the read
// side (internal/query) and the command layer (internal/command) apply
// the user binding to the orders they touch.
package auth

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/gin-gonic/gin"
)

// Scopes is a set of scopes.
type Scopes uint8

// The scopes.
const (
	Read Scopes = 1 << iota
	Write
	Admin
)

var scopeNames = []struct {
	s    Scopes
	name string
}{{Read, "read"}, {Write, "write"}, {Admin, "admin"}}

// ParseScope returns the scope called name ("read", "write", "admin").
func ParseScope(name string) (Scopes, bool) {
	for _, n := range scopeNames {
		if n.name == name {
			return n.s, true
		}
	}
	return 0, false
}

// Has reports whether s grants every scope of want; admin grants all.
func (s Scopes) Has(want Scopes) bool { return s&Admin != 0 || s&want == want }

// String lists the scopes, comma-separated ("read,write").
func (s Scopes) String() string {
	var out []string
	for _, n := range scopeNames {
		if s&n.s != 0 {
			out = append(out, n.name)
		}
	}
	return strings.Join(out, ",")
}

// Principal is an authenticated caller.
type Principal struct {
	// ID names the caller in event metadata and scopes its idempotency
	// keys: the key's id, or "oidc:" + the token's sub.
	ID     string
	Scopes Scopes
	// Users, when not empty, are the only users whose orders the
	// principal may see or change (ignored with admin).
	Users []string
	// Token is true for a bearer token, false for an API key.
	Token bool
}

// Bound reports whether the principal acts for given users only.
func (p *Principal) Bound() bool { return len(p.Users) > 0 && !p.Scopes.Has(Admin) }

// MayActFor reports whether the principal may see or change the orders
// of user.
func (p *Principal) MayActFor(user string) bool { return !p.Bound() || slices.Contains(p.Users, user) }

// ActsFor returns the users the principal is bound to, nil when it may act
// for any user.
func (p *Principal) ActsFor() []string {
	if !p.Bound() {
		return nil
	}
	return p.Users
}

func (p *Principal) String() string {
	s := fmt.Sprintf("%s scopes=%s", p.ID, p.Scopes)
	if p.Bound() {
		s += " users=" + strings.Join(p.Users, "|")
	}
	return s
}

const principalKey = "cqrsflow.principal"

// Set records the authenticated principal of a request.
func Set(c *gin.Context, p *Principal) { c.Set(principalKey, p) }

// FromContext returns the request's principal, nil when it is anonymous.
func FromContext(c *gin.Context) *Principal {
	v, _ := c.Get(principalKey)
	p, _ := v.(*Principal)
	return p
}

// Authenticator accepts API keys and, when Tokens is set, bearer tokens.
type Authenticator struct {
	Keys   *Keys     // nil: no API keys
	Tokens *Verifier // nil: no OIDC tokens
}

// ErrUnknownKey: the credential is no configured API key (and not a token
// the Verifier could check).
var ErrUnknownKey = errors.New("invalid API key")

// Authenticate returns the principal of a bearer credential: an API key
// if one matches, else a token when tokens are configured and it has a
// token's shape. A *TokenError says why a token was refused.
func (a *Authenticator) Authenticate(ctx context.Context, credential string) (*Principal, error) {
	if a.Keys != nil {
		if p, ok := a.Keys.Authenticate(credential); ok {
			return p, nil
		}
	}
	if a.Tokens != nil && strings.Count(credential, ".") == 2 {
		return a.Tokens.Verify(ctx, credential)
	}
	return nil, ErrUnknownKey
}
