package projector

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// readIdle is how long readToEnd waits for the next record of a
// partition it has not read to its end before it stops: a compacted topic
// can end in offsets whose records were removed, which no fetch returns.
const readIdle = 3 * time.Second

// readToEnd reads topic from its start offsets to its end offsets of now
// (records produced meanwhile are left out, so it is bounded). A topic
// that does not exist reads as empty.
func readToEnd(ctx context.Context, conn []kgo.Opt, adm *kadm.Client, topic string) ([]*kgo.Record, map[int32]int64, error) {
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		if errors.Is(err, kerr.UnknownTopicOrPartition) {
			return nil, nil, nil
		}
		return nil, nil, fmt.Errorf("listing start offsets of %s: %w", topic, err)
	}
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return nil, nil, fmt.Errorf("listing end offsets of %s: %w", topic, err)
	}
	want := map[int32]int64{} // partition → end offset, for the partitions with records
	from := map[int32]kgo.Offset{}
	endOf := map[int32]int64{}
	ends.Each(func(e kadm.ListedOffset) {
		endOf[e.Partition] = e.Offset
		if s, ok := starts.Lookup(topic, e.Partition); ok && s.Offset < e.Offset {
			want[e.Partition] = e.Offset
			from[e.Partition] = kgo.NewOffset().At(s.Offset)
		}
	})
	if len(want) == 0 {
		return nil, endOf, nil
	}
	cl, err := newClient(conn, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: from}))
	if err != nil {
		return nil, nil, fmt.Errorf("kafka client: %w", err)
	}
	defer cl.Close()
	var out []*kgo.Record
	for len(want) > 0 {
		pctx, cancel := context.WithTimeout(ctx, readIdle)
		f := cl.PollFetches(pctx)
		cancel()
		if ctx.Err() != nil {
			return nil, nil, fmt.Errorf("reading %s: %w", topic, ctx.Err())
		}
		if f.NumRecords() == 0 && pctx.Err() != nil {
			break // idle: the rest was compacted away
		}
		var ferr error
		f.EachError(func(_ string, _ int32, err error) { ferr = err })
		if ferr != nil {
			return nil, nil, fmt.Errorf("reading %s: %w", topic, ferr)
		}
		f.EachRecord(func(r *kgo.Record) {
			end, ok := want[r.Partition]
			if !ok || r.Offset >= end {
				return
			}
			out = append(out, r)
			if r.Offset >= end-1 {
				delete(want, r.Partition)
			}
		})
	}
	return out, endOf, nil
}

// readQuarantine returns the quarantined aggregates of projection: the
// latest record per key, without the released ones.
func readQuarantine(ctx context.Context, conn []kgo.Opt, adm *kadm.Client, topic, projection string) (map[string]QuarantineEntry, error) {
	recs, _, err := readToEnd(ctx, conn, adm, QuarantineTopic(topic))
	if err != nil {
		return nil, err
	}
	return foldQuarantine(recs, projection, nil), nil
}

// foldQuarantine folds the quarantine topic's records (in offset order)
// into projection's quarantined aggregates: the latest record per key,
// without the released ones (a tombstone or an undecodable value releases
// too). released, if not nil, sees every release record of projection.
func foldQuarantine(recs []*kgo.Record, projection string, released func(id string, e QuarantineEntry)) map[string]QuarantineEntry {
	out := map[string]QuarantineEntry{}
	for _, r := range recs {
		proj, id, ok := strings.Cut(string(r.Key), ":")
		if !ok || proj != projection {
			continue
		}
		var e QuarantineEntry
		if r.Value == nil || json.Unmarshal(r.Value, &e) != nil || e.Released {
			delete(out, id)
			if e.Released && released != nil {
				released(id, e)
			}
			continue
		}
		out[id] = e
	}
	return out
}

// dlqHeaders returns the x-dlq-* headers of a dead letter and its other
// headers (the original record's).
func dlqHeaders(r *kgo.Record) (map[string]string, []kgo.RecordHeader) {
	dlq := map[string]string{}
	var orig []kgo.RecordHeader
	for _, h := range r.Headers {
		if strings.HasPrefix(h.Key, dlqHeaderPrefix) {
			dlq[h.Key] = string(h.Value)
		} else {
			orig = append(orig, h)
		}
	}
	return dlq, orig
}

// source rebuilds the original record of a dead letter: its topic,
// partition and offset from the headers, its key, value and headers.
func source(r *kgo.Record, h map[string]string, orig []kgo.RecordHeader) *kgo.Record {
	p, _ := strconv.ParseInt(h[HeaderDLQSourcePartition], 10, 32)
	o, err := strconv.ParseInt(h[HeaderDLQSourceOffset], 10, 64)
	if err != nil {
		o = -1
	}
	return &kgo.Record{Topic: h[HeaderDLQSourceTopic], Partition: int32(p), Offset: o, Key: r.Key, Value: r.Value,
		Headers: orig, Timestamp: r.Timestamp}
}

// blockedOf reads the x-dlq-blocked-* headers (nil when absent).
func blockedOf(h map[string]string) *Blocker {
	v, err := strconv.ParseInt(h[HeaderDLQBlockedVersion], 10, 64)
	if err != nil {
		return nil
	}
	p, _ := strconv.ParseInt(h[HeaderDLQBlockedPart], 10, 32)
	o, err := strconv.ParseInt(h[HeaderDLQBlockedOffset], 10, 64)
	if err != nil {
		o = -1
	}
	return &Blocker{Version: v, Topic: h[HeaderDLQBlockedTopic], Partition: int32(p), Offset: o}
}
