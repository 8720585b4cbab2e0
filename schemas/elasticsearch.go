package schemas

import "embed"

// Elasticsearch holds the index mappings (settings + mappings bodies of the
// create-index API), one file per projection: elasticsearch/<projection>.json.
//
//go:embed elasticsearch/*.json
var Elasticsearch embed.FS
