// Package schemas embeds the SQL migrations, event JSON Schemas and
// Elasticsearch index mappings so every binary ships with them.
package schemas

import "embed"

// Migrations holds the versioned SQL migrations (golang-migrate layout).
//
//go:embed migrations/*.sql
var Migrations embed.FS
