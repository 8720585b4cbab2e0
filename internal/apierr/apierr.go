// Package apierr writes the JSON error body of docs/architecture.md:
// {"error": {"code": "…", "message": "…", "details": …}}.
package apierr

import "github.com/gin-gonic/gin"

// Body is the JSON error body.
type Body struct {
	Error Detail `json:"error"`
}

// Detail is the content of an error body.
type Detail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Details any    `json:"details,omitempty"`
}

// Abort writes the error body with status and stops the handler chain.
func Abort(c *gin.Context, status int, code, message string, details any) {
	c.AbortWithStatusJSON(status, Body{Error: Detail{Code: code, Message: message, Details: details}})
}
