package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"cqrsflow/chaos/checker"
)

// readStore reads every event of the run's schema, the rows left in the
// outbox and the relay's dead letters, in one snapshot.
func (p *pipeline) readStore(ctx context.Context, in *checker.Input) error {
	conn, err := pgx.Connect(ctx, p.pgURL)
	if err != nil {
		return fmt.Errorf("connecting to read the store: %w", err)
	}
	defer conn.Close(context.Background())
	return pgx.BeginTxFunc(ctx, conn, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT id, aggregate_type, aggregate_id, version, event_id::text FROM outbox ORDER BY id`)
		if err != nil {
			return fmt.Errorf("reading the outbox: %w", err)
		}
		var o checker.OutboxRow
		if _, err := pgx.ForEachRow(rows, []any{&o.ID, &o.AggregateType, &o.AggregateID, &o.Version, &o.EventID}, func() error {
			in.Outbox = append(in.Outbox, o)
			return nil
		}); err != nil {
			return fmt.Errorf("reading the outbox: %w", err)
		}
		rows, err = tx.Query(ctx, `SELECT id, aggregate_type, aggregate_id, version, event_id::text, reason, error, attempts
			FROM outbox_dead_letters ORDER BY id`)
		if err != nil {
			return fmt.Errorf("reading outbox_dead_letters: %w", err)
		}
		var d checker.DeadLetter
		if _, err := pgx.ForEachRow(rows, []any{&d.ID, &d.AggregateType, &d.AggregateID, &d.Version, &d.EventID, &d.Reason, &d.Error, &d.Attempts}, func() error {
			in.DeadLetters = append(in.DeadLetters, d)
			return nil
		}); err != nil {
			return fmt.Errorf("reading outbox_dead_letters: %w", err)
		}
		rows, err = tx.Query(ctx, `SELECT global_position, event_id::text, aggregate_type, aggregate_id, version, event_type,
			schema_version, payload::text, metadata::text, occurred_at, recorded_at FROM events ORDER BY global_position`)
		if err != nil {
			return fmt.Errorf("reading events: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			var (
				e             checker.Event
				payload, meta string
			)
			if err := rows.Scan(&e.GlobalPosition, &e.EventID, &e.AggregateType, &e.AggregateID, &e.Version, &e.Type,
				&e.SchemaVersion, &payload, &meta, &e.OccurredAt, &e.RecordedAt); err != nil {
				return fmt.Errorf("reading events: %w", err)
			}
			e.Payload = json.RawMessage(payload)
			if err := json.Unmarshal([]byte(meta), &e.Metadata); err != nil {
				return fmt.Errorf("event %s metadata: %w", e.EventID, err)
			}
			in.Events = append(in.Events, e)
		}
		return rows.Err()
	})
}

// readTopics reads every record of the given topics from the start to
// their end offsets, and the topics' partition counts.
func (p *pipeline) readTopics(ctx context.Context, topics []string) ([]checker.Record, map[string]int32, error) {
	adm, closeAdm, err := p.h.kafkaAdmin()
	if err != nil {
		return nil, nil, err
	}
	defer closeAdm()
	ends, err := adm.ListEndOffsets(ctx, topics...)
	if err != nil {
		return nil, nil, fmt.Errorf("listing end offsets: %w", err)
	}
	parts := map[string]int32{}
	want := map[string]map[int32]kgo.Offset{}
	left := map[string]int64{} // topic/partition → end offset
	ends.Each(func(o kadm.ListedOffset) {
		parts[o.Topic]++
		if want[o.Topic] == nil {
			want[o.Topic] = map[int32]kgo.Offset{}
		}
		want[o.Topic][o.Partition] = kgo.NewOffset().AtStart()
		if o.Offset > 0 {
			left[fmt.Sprintf("%s/%d", o.Topic, o.Partition)] = o.Offset
		}
	})
	if ends.Error() != nil {
		return nil, nil, fmt.Errorf("end offsets: %w", ends.Error())
	}
	var recs []checker.Record
	if len(left) == 0 {
		return recs, parts, nil
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(p.h.stk.KafkaAddr()), kgo.ConsumePartitions(want), kgo.FetchMaxBytes(64<<20))
	if err != nil {
		return nil, nil, err
	}
	defer cl.Close()
	rctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	for len(left) > 0 {
		fs := cl.PollFetches(rctx)
		if rctx.Err() != nil {
			return nil, nil, fmt.Errorf("reading topics: %d partitions not read to their end: %w", len(left), rctx.Err())
		}
		fs.EachRecord(func(r *kgo.Record) {
			h := map[string]string{}
			for _, hd := range r.Headers {
				h[hd.Key] = string(hd.Value)
			}
			recs = append(recs, checker.Record{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset, Key: string(r.Key), Value: r.Value, Headers: h})
			k := fmt.Sprintf("%s/%d", r.Topic, r.Partition)
			if end, ok := left[k]; ok && r.Offset+1 >= end {
				delete(left, k)
			}
		})
	}
	return recs, parts, nil
}

// groupLag is end offset − committed offset over the group's topic.
func (p *pipeline) groupLag(ctx context.Context) (map[string]int64, error) {
	adm, closeAdm, err := p.h.kafkaAdmin()
	if err != nil {
		return nil, err
	}
	defer closeAdm()
	out := map[string]int64{}
	for proj, agg := range map[string]string{"products": "product", "orders": "order"} {
		g, topic := p.group(proj), p.topic(agg)
		ends, err := adm.ListEndOffsets(ctx, topic)
		if err != nil {
			return nil, err
		}
		committed, err := adm.FetchOffsets(ctx, g)
		if err != nil {
			return nil, fmt.Errorf("fetching offsets of %s: %w", g, err)
		}
		var lag int64
		ends.Each(func(o kadm.ListedOffset) {
			c, ok := committed.Lookup(topic, o.Partition)
			at := int64(0)
			if ok && c.Err == nil {
				at = c.At
			}
			lag += max(0, o.Offset-at)
		})
		out[g] = lag
	}
	return out, nil
}

// readDocs reads every document of a read model (after a refresh), with
// its _version.
func (p *pipeline) readDocs(ctx context.Context, projection string) ([]checker.Doc, error) {
	base := p.h.stk.ESURL() + "/" + p.indexPrefix + projection
	if err := esJSON(ctx, http.MethodPost, base+"/_refresh", nil, nil); err != nil {
		return nil, err
	}
	var docs []checker.Doc
	var after []any
	for {
		q := map[string]any{"size": 1000, "version": true, "sort": []any{map[string]string{"id": "asc"}}, "query": map[string]any{"match_all": map[string]any{}}}
		if after != nil {
			q["search_after"] = after
		}
		var res struct {
			Hits struct {
				Hits []struct {
					ID      string          `json:"_id"`
					Version int64           `json:"_version"`
					Source  json.RawMessage `json:"_source"`
					Sort    []any           `json:"sort"`
				} `json:"hits"`
			} `json:"hits"`
		}
		if err := esJSON(ctx, http.MethodPost, base+"/_search", q, &res); err != nil {
			return nil, err
		}
		for _, h := range res.Hits.Hits {
			docs = append(docs, checker.Doc{ID: h.ID, ESVersion: h.Version, Source: h.Source})
		}
		if len(res.Hits.Hits) < 1000 {
			return docs, nil
		}
		after = res.Hits.Hits[len(res.Hits.Hits)-1].Sort
	}
}

// scrape reads the cqrsflow_* samples of a process's /metrics.
func scrape(ctx context.Context, b *binary) ([]checker.Sample, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+b.addr+"/metrics", nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scraping %s: %w", b.name, err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scraping %s: %s", b.name, res.Status)
	}
	return parseMetrics(b.name, res.Body)
}

// parseMetrics reads the Prometheus text format: name{labels} value.
func parseMetrics(process string, r io.Reader) ([]checker.Sample, error) {
	var out []checker.Sample
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "cqrsflow_") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		s := checker.Sample{Process: process, Name: line[:i], Value: v, Labels: map[string]string{}}
		if j := strings.IndexByte(s.Name, '{'); j >= 0 {
			for _, kv := range strings.Split(strings.TrimSuffix(s.Name[j+1:], "}"), ",") {
				if k, v, ok := strings.Cut(kv, "="); ok {
					s.Labels[k] = strings.Trim(v, `"`)
				}
			}
			s.Name = s.Name[:j]
		}
		out = append(out, s)
	}
	return out, sc.Err()
}

// badLog are the log lines no binary may print.
var badLog = []string{"panic:", "fatal error:", "DATA RACE", "panic serving request", "[running]:"}

// driftLog marks a projector's continuous verification finding a document
// that is not the fold of its events (internal/projector/verify_worker.go).
const driftLog = `"msg":"read model drift`

// scanLogs finds panics, fatal errors and race reports in the binaries'
// logs, and the drift the projectors' continuous verification reported.
func (p *pipeline) scanLogs() (hits, drift []checker.LogHit, lines int, err error) {
	for _, c := range allComponents {
		path := p.bins[c].logPath
		f, err := os.Open(path)
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			return nil, nil, 0, err
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 4<<20)
		n, dump := 0, false
		for sc.Scan() {
			n++
			t := sc.Text()
			// A goroutine dump the harness asked for is not a crash.
			if strings.HasPrefix(t, dumpMarker) {
				dump = true
			} else if strings.HasPrefix(t, "=== chaos: start") {
				dump = false
			}
			if dump {
				continue
			}
			hit := checker.LogHit{Process: c, File: path, Line: n, Text: t}
			if len(t) > 300 {
				hit.Text = t[:300] + "…"
			}
			for _, bad := range badLog {
				if strings.Contains(t, bad) && len(hits) < 200 {
					hits = append(hits, hit)
					break
				}
			}
			if strings.Contains(t, driftLog) && len(drift) < 200 {
				drift = append(drift, hit)
			}
		}
		f.Close()
		lines += n
	}
	return hits, drift, lines, nil
}
