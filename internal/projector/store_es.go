package projector

import (
	"context"

	"github.com/elastic/go-elasticsearch/v8"

	"cqrsflow/internal/esindex"
)

// esStore is the Store of one Elasticsearch index or alias. Writing
// through an alias is what lets a rebuild's alias swap redirect the live
// projector without a restart.
type esStore struct {
	es    *elasticsearch.Client
	index string
}

func (s *esStore) MGet(ctx context.Context, ids []string) (map[string]esindex.Hit, error) {
	return esindex.MGet(ctx, s.es, s.index, ids)
}

func (s *esStore) Bulk(ctx context.Context, ops []esindex.Op) ([]esindex.Result, error) {
	for i := range ops {
		ops[i].Index = s.index
	}
	return esindex.Bulk(ctx, s.es, ops, "")
}
