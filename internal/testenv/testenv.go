// Package testenv gives integration tests the real local stack: a private
// PostgreSQL schema with migrations applied, unique Kafka topics and
// Elasticsearch index names, all cleaned up after the test.
//
// The services are found through TEST_POSTGRES_URL, TEST_KAFKA_BROKERS and
// TEST_ELASTICSEARCH_URL (set by the Makefile, local defaults otherwise). A
// service that cannot be reached fails the test and names `make up`: it
// never skips.
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/elastic/go-elasticsearch/v8"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"cqrsflow/internal/config"
)

const hint = "the local stack is not reachable: run `make up` (or `make test`, which starts it)"

func env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// PostgresURL is the base database URL of the test PostgreSQL.
func PostgresURL() string { return env("TEST_POSTGRES_URL", config.DefaultPostgresURL) }

// KafkaBrokers is the broker list of the test Kafka.
func KafkaBrokers() []string {
	return config.SplitList(env("TEST_KAFKA_BROKERS", config.DefaultKafkaBrokers))
}

// ElasticsearchURL is the URL of the test Elasticsearch.
func ElasticsearchURL() string { return env("TEST_ELASTICSEARCH_URL", config.DefaultElasticsearchURL) }

var nonAlnum = regexp.MustCompile(`[^a-z0-9]+`)

// Name returns a unique lower-case name derived from the test name, safe
// as a schema, topic or index name.
func Name(t testing.TB) string {
	t.Helper()
	base := strings.Trim(nonAlnum.ReplaceAllString(strings.ToLower(t.Name()), "_"), "_")
	if len(base) > 30 {
		base = base[:30]
	}
	return "t_" + base + "_" + RandomHex(4)
}

// RandomHex is n random bytes in lower-case hex: the unique part of the
// names a run gives its schema, topics and indices.
func RandomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func ctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

// PG is a private, migrated schema in the test database.
type PG struct {
	Pool   *pgxpool.Pool
	URL    string // database URL with search_path set to Schema
	Schema string
}

// Postgres creates a fresh schema, applies the migrations into it and
// returns a pool whose connections use it. The schema is dropped on cleanup.
func Postgres(t testing.TB) *PG {
	t.Helper()
	c := ctx(t)
	s, err := CreateSchema(c, PostgresURL(), Name(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := s.Drop(cctx); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	if err := s.Migrate(c); err != nil {
		t.Fatal(err)
	}
	pool, err := pgxpool.New(c, s.URL)
	if err != nil {
		t.Fatalf("opening pool: %v", err)
	}
	t.Cleanup(pool.Close)
	return &PG{Pool: pool, URL: s.URL, Schema: s.Name}
}

// KafkaAdmin returns an admin client for the test Kafka, failing the test
// if the broker does not answer.
func KafkaAdmin(t testing.TB) *kadm.Client {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(KafkaBrokers()...))
	if err != nil {
		t.Fatalf("kafka client: %v", err)
	}
	t.Cleanup(cl.Close)
	adm := kadm.NewClient(cl)
	if _, err := adm.ApiVersions(ctx(t)); err != nil {
		t.Fatalf("kafka at %v: %v\n%s", KafkaBrokers(), err, hint)
	}
	return adm
}

// Topic creates a unique topic with the given partition count (replication
// factor 1, infinite retention) and deletes it on cleanup.
func Topic(t testing.TB, partitions int32) string {
	t.Helper()
	adm := KafkaAdmin(t)
	name := strings.ReplaceAll(Name(t), "_", "-")
	CreateTopic(t, adm, name, partitions)
	return name
}

// CreateTopic creates the named topic and deletes it on cleanup.
func CreateTopic(t testing.TB, adm *kadm.Client, name string, partitions int32) {
	t.Helper()
	retention := "-1"
	resp, err := adm.CreateTopics(ctx(t), partitions, 1, map[string]*string{"retention.ms": &retention}, name)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		t.Fatalf("creating topic %s: %v", name, err)
	}
	t.Cleanup(func() {
		cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := adm.DeleteTopics(cctx, name); err != nil {
			t.Logf("cleanup: deleting topic %s: %v", name, err)
		}
	})
}

// Elasticsearch returns a client for the test Elasticsearch, failing the
// test if the cluster does not answer.
func Elasticsearch(t testing.TB) *elasticsearch.Client {
	t.Helper()
	es, err := elasticsearch.NewClient(elasticsearch.Config{Addresses: []string{ElasticsearchURL()}})
	if err != nil {
		t.Fatalf("elasticsearch client: %v", err)
	}
	res, err := es.Cluster.Health(es.Cluster.Health.WithContext(ctx(t)))
	if err != nil {
		t.Fatalf("elasticsearch at %s: %v\n%s", ElasticsearchURL(), err, hint)
	}
	defer res.Body.Close()
	if res.IsError() {
		t.Fatalf("elasticsearch at %s: cluster health: %s\n%s", ElasticsearchURL(), res.Status(), hint)
	}
	return es
}

// IndexPrefix returns a unique index-name prefix; every index starting with
// it is deleted on cleanup.
func IndexPrefix(t testing.TB) string {
	t.Helper()
	es := Elasticsearch(t)
	prefix := strings.ReplaceAll(Name(t), "_", "-")
	t.Cleanup(func() { DeleteIndices(t, es, prefix+"*") })
	return prefix
}

// DeleteIndices deletes every index matching pattern. Elasticsearch 8
// refuses wildcard deletes by default (action.destructive_requires_name),
// so the names are resolved first. Failures are logged, not fatal: it runs
// in cleanup.
func DeleteIndices(t testing.TB, es *elasticsearch.Client, pattern string) {
	t.Helper()
	if err := RemoveIndices(context.Background(), es, pattern); err != nil {
		t.Logf("cleanup: %v", err)
	}
}

// RemoveIndices is DeleteIndices for callers without a testing.TB (the
// benchmark harness): it deletes every index matching pattern and says
// what went wrong.
func RemoveIndices(ctx context.Context, es *elasticsearch.Client, pattern string) error {
	res, err := es.Indices.Get([]string{pattern}, es.Indices.Get.WithContext(ctx), es.Indices.Get.WithExpandWildcards("all"),
		es.Indices.Get.WithFilterPath("*.settings.index.provided_name"))
	if err != nil {
		return fmt.Errorf("listing indices %s: %w", pattern, err)
	}
	defer res.Body.Close()
	if res.StatusCode == http.StatusNotFound {
		return nil
	}
	if res.IsError() {
		return fmt.Errorf("listing indices %s: %s", pattern, res.Status())
	}
	var found map[string]json.RawMessage
	if err := json.NewDecoder(res.Body).Decode(&found); err != nil {
		return fmt.Errorf("decoding the indices %s: %w", pattern, err)
	}
	names := make([]string, 0, len(found))
	for n := range found {
		names = append(names, n)
	}
	if len(names) == 0 {
		return nil
	}
	dres, err := es.Indices.Delete(names, es.Indices.Delete.WithContext(ctx))
	if err != nil {
		return fmt.Errorf("deleting indices %v: %w", names, err)
	}
	defer dres.Body.Close()
	if dres.IsError() {
		msg, _ := io.ReadAll(io.LimitReader(dres.Body, 300))
		return fmt.Errorf("deleting indices %v: %s %s", names, dres.Status(), msg)
	}
	return nil
}
