package httpapi

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"

	"cqrsflow/internal/apierr"
	"cqrsflow/internal/auth"
)

// maxAuthorization bounds the Authorization header: a key is at most
// auth.MaxKeyLen, and an identity provider's tokens are a few KiB.
const maxAuthorization = 8 << 10

func unauthenticated(c *gin.Context, errCode, message string) {
	h := `Bearer realm="cqrsflow"`
	if errCode != "" {
		h += `, error="` + errCode + `"`
	}
	c.Header("WWW-Authenticate", h)
	apierr.Abort(c, http.StatusUnauthorized, "unauthenticated", message, nil)
}

// authenticate reads Authorization: Bearer <API key or token> and records
// the principal. Without the header the request is refused, unless
// optional (public routes), where it goes on anonymous; a credential that
// is sent must be valid either way.
func authenticate(a *auth.Authenticator, optional bool) gin.HandlerFunc {
	return func(c *gin.Context) {
		h := c.GetHeader("Authorization")
		if h == "" {
			if optional {
				c.Next()
				return
			}
			unauthenticated(c, "", "missing Authorization: Bearer <API key or token>")
			return
		}
		if len(h) > maxAuthorization {
			unauthenticated(c, "invalid_request", fmt.Sprintf("the Authorization header is longer than %d bytes", maxAuthorization))
			return
		}
		scheme, credential, _ := strings.Cut(h, " ")
		credential = strings.TrimSpace(credential)
		if !strings.EqualFold(scheme, "Bearer") || credential == "" {
			unauthenticated(c, "invalid_request", "the Authorization header must be: Bearer <API key or token>")
			return
		}
		p, err := a.Authenticate(c.Request.Context(), credential)
		if err != nil {
			var te *auth.TokenError
			if errors.As(err, &te) {
				unauthenticated(c, "invalid_token", "invalid token: "+te.Reason)
			} else {
				unauthenticated(c, "invalid_token", "invalid API key")
			}
			return
		}
		auth.Set(c, p)
		c.Next()
	}
}

// requireScope answers 403 when the principal lacks scope (after
// authenticate; an anonymous request on such a route is a 401).
func requireScope(scope auth.Scopes) gin.HandlerFunc {
	return func(c *gin.Context) {
		p := auth.FromContext(c)
		if p == nil {
			unauthenticated(c, "", "missing Authorization: Bearer <API key or token>")
			return
		}
		if !p.Scopes.Has(scope) {
			c.Header("WWW-Authenticate", `Bearer realm="cqrsflow", error="insufficient_scope", scope="`+scope.String()+`"`)
			apierr.Abort(c, http.StatusForbidden, "forbidden", fmt.Sprintf("this credential lacks the %s scope", scope), nil)
			return
		}
		c.Next()
	}
}

// requireUnbound refuses principals bound to users: they act for their
// users' orders and have no business changing the catalogue.
func requireUnbound() gin.HandlerFunc {
	return func(c *gin.Context) {
		if p := auth.FromContext(c); p != nil && p.Bound() {
			apierr.Abort(c, http.StatusForbidden, "forbidden", "a credential bound to users cannot change products", nil)
			return
		}
		c.Next()
	}
}

// principalID is the principal's id for logs and metadata ("" when anonymous).
func principalID(c *gin.Context) string {
	if p := auth.FromContext(c); p != nil {
		return p.ID
	}
	return ""
}
