// Package events embeds the JSON Schemas of every event type and version:
// <aggregate_type>/<EventType>.v<N>.json. internal/eventschema compiles them.
package events

import "embed"

// FS holds the event schemas.
//
//go:embed */*.json
var FS embed.FS
