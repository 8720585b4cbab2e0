//go:build integration

package main_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"cqrsflow/internal/esindex"
	"cqrsflow/internal/testenv"
)

// readyz returns the projector's /readyz answer: status code and checks.
func readyz(t *testing.T, p *proc) (int, map[string]string) {
	t.Helper()
	res, err := http.Get(p.metrics + "/readyz")
	if err != nil {
		return 0, nil
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	var body struct {
		Checks map[string]string `json:"checks"`
	}
	if err := json.Unmarshal(b, &body); err != nil {
		t.Fatalf("/readyz %d: %q: %v", res.StatusCode, b, err)
	}
	return res.StatusCode, body.Checks
}

// A projector started while Elasticsearch and Kafka are both unreachable
// does not exit: it serves /readyz as not ready ("started" down), waits
// with backoff, prepares its read model once Elasticsearch is back and
// its topics once Kafka is back, then becomes ready and projects.
func TestStartsBeforeItsDependencies(t *testing.T) {
	s := newStack(t, 2)
	kafka := testenv.NewProxy(t, testenv.KafkaBrokers()[0])
	es := testenv.NewProxy(t, strings.TrimPrefix(testenv.ElasticsearchURL(), "http://"))
	kafka.Cut()
	es.Cut()
	addr := testenv.FreeAddr(t)
	p := launchProc(t, "projector", addr, s.env("METRICS_ADDR="+addr,
		"KAFKA_BROKERS="+kafka.Addr(), "ELASTICSEARCH_URL=http://"+es.Addr()))

	notReady := func(what string, d time.Duration) {
		t.Helper()
		deadline := time.Now().Add(d)
		for time.Now().Before(deadline) {
			select {
			case <-p.exited:
				t.Fatalf("projector exited %s: %v", what, p.cmd.ProcessState)
			default:
			}
			if code, checks := readyz(t, p); code == 200 || (code != 0 && checks["started"] != "down") {
				t.Fatalf("%s: /readyz %d %v, want 503 with started down", what, code, checks)
			}
			time.Sleep(250 * time.Millisecond)
		}
	}
	notReady("with Elasticsearch and Kafka down", 4*time.Second)

	es.Restore()
	alias := s.alias()
	waitFor(t, 30*time.Second, "the read model prepared once Elasticsearch is back", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := esindex.AliasTargets(ctx, s.es, alias)
		return err == nil
	})
	notReady("with Kafka still down", 2*time.Second)

	kafka.Restore()
	waitFor(t, 40*time.Second, "ready once Kafka is back", p.ready)
	id := uuid.NewString()
	s.produce(t, event(id, "ProductCreated", 1, `{"name":"late start","price":1.5,"stock":1}`))
	waitFor(t, 30*time.Second, "the event projected", func() bool {
		res, err := s.es.Get(alias, id)
		if err != nil {
			return false
		}
		defer res.Body.Close()
		return res.StatusCode == 200
	})
}
