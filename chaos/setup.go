package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// prepare creates the run's schema (migrated by `api migrate`, as an
// operator would) and its topics.
func (p *pipeline) prepare(ctx context.Context) error {
	h := p.h
	conn, err := pgx.Connect(ctx, h.stk.PostgresURL(h.stk.port(offPostgres)))
	if err != nil {
		return fmt.Errorf("connecting to the chaos PostgreSQL: %w", err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+pgx.Identifier{p.schema}.Sanitize()); err != nil {
		return fmt.Errorf("creating schema %s: %w", p.schema, err)
	}
	mctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(mctx, p.bins["api"].path, "migrate")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "POSTGRES_URL=" + p.pgURL, "API_KEYS=x", "CQRSFLOW_STATE_DIR=" + h.stk.dir}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("api migrate: %w\n%s", err, out)
	}
	adm, closeAdm, err := h.kafkaAdmin()
	if err != nil {
		return err
	}
	defer closeAdm()
	retention := "-1"
	var names []string
	for _, agg := range []string{"product", "order"} {
		names = append(names, p.topic(agg), p.topic(agg)+".dlq")
	}
	resp, err := adm.CreateTopics(ctx, partitions, 1, map[string]*string{"retention.ms": &retention}, names...)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		return fmt.Errorf("creating topics %v: %w", names, err)
	}
	return nil
}

func (h *harness) kafkaAdmin() (*kadm.Client, func(), error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(h.stk.KafkaAddr()), kgo.RetryTimeout(30*time.Second))
	if err != nil {
		return nil, nil, fmt.Errorf("kafka client: %w", err)
	}
	return kadm.NewClient(cl), cl.Close, nil
}

// cleanLeftovers deletes what earlier runs left in the chaos stack (a
// failed run keeps its data until the next run): chaos_* schemas, chaos-*
// topics, groups and indices.
func (h *harness) cleanLeftovers(ctx context.Context) error {
	var errs []error
	if conn, err := pgx.Connect(ctx, h.stk.PostgresURL(h.stk.port(offPostgres))); err != nil {
		errs = append(errs, fmt.Errorf("connecting to PostgreSQL: %w", err))
	} else {
		rows, err := conn.Query(ctx, "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'chaos\\_%'")
		var schemas []string
		if err == nil {
			schemas, err = pgx.CollectRows(rows, pgx.RowTo[string])
		}
		errs = append(errs, err)
		for _, s := range schemas {
			if _, err := conn.Exec(ctx, "DROP SCHEMA "+pgx.Identifier{s}.Sanitize()+" CASCADE"); err != nil {
				errs = append(errs, fmt.Errorf("dropping schema %s: %w", s, err))
			}
		}
		conn.Close(context.Background())
	}
	errs = append(errs, h.deleteKafka(ctx, "chaos-"), h.deleteIndices(ctx, "chaos-"))
	return errors.Join(errs...)
}

// deleteKafka deletes the topics and consumer groups named <prefix>*.
func (h *harness) deleteKafka(ctx context.Context, prefix string) error {
	adm, closeAdm, err := h.kafkaAdmin()
	if err != nil {
		return err
	}
	defer closeAdm()
	var errs []error
	if groups, err := adm.ListGroups(ctx); err != nil {
		errs = append(errs, fmt.Errorf("listing groups: %w", err))
	} else {
		var mine []string
		for _, g := range groups.Groups() {
			if strings.HasPrefix(g, prefix) {
				mine = append(mine, g)
			}
		}
		if len(mine) > 0 {
			if _, err := adm.DeleteGroups(ctx, mine...); err != nil {
				errs = append(errs, fmt.Errorf("deleting groups: %w", err))
			}
		}
	}
	if topics, err := adm.ListTopics(ctx); err != nil {
		errs = append(errs, fmt.Errorf("listing topics: %w", err))
	} else {
		var mine []string
		for _, t := range topics.Names() {
			if strings.HasPrefix(t, prefix) {
				mine = append(mine, t)
			}
		}
		if len(mine) > 0 {
			if _, err := adm.DeleteTopics(ctx, mine...); err != nil {
				errs = append(errs, fmt.Errorf("deleting topics: %w", err))
			}
		}
	}
	return errors.Join(errs...)
}

// deleteIndices deletes the indices named <prefix>* (Elasticsearch 8
// refuses wildcard deletes, so the names are listed first).
func (h *harness) deleteIndices(ctx context.Context, prefix string) error {
	var rows []struct {
		Index string `json:"index"`
	}
	if err := esJSON(ctx, http.MethodGet, h.stk.ESURL()+"/_cat/indices/"+prefix+"*?h=index&format=json&expand_wildcards=all", nil, &rows); err != nil {
		return fmt.Errorf("listing indices: %w", err)
	}
	var names []string
	for _, r := range rows {
		if strings.HasPrefix(r.Index, prefix) {
			names = append(names, r.Index)
		}
	}
	if len(names) == 0 {
		return nil
	}
	return esJSON(ctx, http.MethodDelete, h.stk.ESURL()+"/"+strings.Join(names, ","), nil, nil)
}

// esJSON sends a request to Elasticsearch and decodes the JSON answer
// into out (if not nil); a non-2xx answer is an error.
func esJSON(ctx context.Context, method, url string, body any, out any) error {
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		r = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, r)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, 256<<20))
	if err != nil {
		return err
	}
	if res.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %s: %.300s", method, url, res.Status, b)
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}
