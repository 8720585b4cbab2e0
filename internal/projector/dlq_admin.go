package projector

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"log/slog"
	"sort"
	"strconv"
	"time"

	"github.com/elastic/go-elasticsearch/v8"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"cqrsflow/internal/envelope"
)

// Status of a dead letter, computed when the DLQ is read.
const (
	// StatusPending: the read model's document is below the event's
	// version; redrive (or skip) applies it.
	StatusPending = "pending"
	// StatusResolved: the document has the event's version or a later
	// one; the record stays in the DLQ as an audit trail.
	StatusResolved = "resolved"
	// StatusInvalid: the record belongs to no aggregate of the read model
	// (undecodable, id over 512 bytes, another aggregate type); nothing
	// can apply it, it is kept for inspection.
	StatusInvalid = "invalid"
)

// DLQRecord is one dead letter of a projection as the admin commands show
// it.
type DLQRecord struct {
	DLQPartition    int32     `json:"dlq_partition"`
	DLQOffset       int64     `json:"dlq_offset"`
	Status          string    `json:"status"`
	ReasonCode      string    `json:"reason_code"`
	Reason          string    `json:"reason"`
	AggregateID     string    `json:"aggregate_id,omitempty"`
	Version         int64     `json:"version,omitempty"`
	EventType       string    `json:"event_type,omitempty"`
	EventID         string    `json:"event_id,omitempty"`
	DocumentVersion int64     `json:"document_version"` // 0: no document
	SourceTopic     string    `json:"source_topic"`
	SourcePartition int32     `json:"source_partition"`
	SourceOffset    int64     `json:"source_offset"`
	Blocked         *Blocker  `json:"blocked,omitempty"`
	At              time.Time `json:"dead_lettered_at"`
	// Copies counts the dead letters of the same record (a crash before
	// the commit, or a redrive, can write one twice); the newest is shown.
	Copies int `json:"copies"`
	// Headers and Value are set by Show only.
	Headers map[string]string `json:"headers,omitempty"`
	Value   json.RawMessage   `json:"value,omitempty"`
	Raw     string            `json:"raw_value,omitempty"` // the value when it is not JSON

	src *kgo.Record // the original record, rebuilt for redrive
}

// DLQFilter selects dead letters: by aggregate id and reason code (empty:
// any), and whether resolved ones are included.
type DLQFilter struct {
	AggregateID string
	Reason      string
	All         bool
}

func (f DLQFilter) match(r DLQRecord) bool {
	return (f.AggregateID == "" || r.AggregateID == f.AggregateID) && (f.Reason == "" || r.ReasonCode == f.Reason) &&
		(f.All || r.Status != StatusResolved)
}

// DLQListing is what List returns.
type DLQListing struct {
	Projection  string            `json:"projection"`
	Records     []DLQRecord       `json:"records"`
	Quarantined []QuarantineEntry `json:"quarantined"`
	// Scanned is the number of the projection's dead letters read.
	Scanned int `json:"scanned"`
}

// DLQAdmin reads and acts on one projection's dead letters and quarantine
// (the `projector dlq` commands). It is stateless: every call reads the
// DLQ topic from its start to its end offsets of that moment.
type DLQAdmin struct {
	proj  Projection
	topic string
	conn  []kgo.Opt // how to reach Kafka (seed brokers, TLS, SASL)
	cl    *kgo.Client
	adm   *kadm.Client
	store Store
	log   *slog.Logger
}

// NewDLQAdmin returns the admin of proj's dead letters of topic, whose
// read model is index (the alias) on es. Close releases its Kafka client.
func NewDLQAdmin(proj Projection, topic string, conn []kgo.Opt, es *elasticsearch.Client, index string, log *slog.Logger) (*DLQAdmin, error) {
	cl, err := newClient(conn, kgo.RequiredAcks(kgo.AllISRAcks()), kgo.ProducerLinger(0))
	if err != nil {
		return nil, fmt.Errorf("kafka client: %w", err)
	}
	return &DLQAdmin{proj: proj, topic: topic, conn: conn, cl: cl, adm: kadm.NewClient(cl),
		store: &esStore{es: es, index: index}, log: log}, nil
}

// Close closes the Kafka client.
func (a *DLQAdmin) Close() { a.cl.Close() }

// List returns the projection's dead letters that match f (one line per
// record, the newest copy of duplicates) and its quarantined aggregates.
func (a *DLQAdmin) List(ctx context.Context, f DLQFilter) (*DLQListing, error) {
	all, quar, err := a.scan(ctx)
	if err != nil {
		return nil, err
	}
	out := &DLQListing{Projection: a.proj.Name(), Records: []DLQRecord{}, Quarantined: []QuarantineEntry{}, Scanned: len(all)}
	for _, r := range dedupe(all) {
		if f.match(r) {
			out.Records = append(out.Records, r)
		}
	}
	for _, e := range quar {
		if (f.AggregateID == "" || e.AggregateID == f.AggregateID) && (f.Reason == "" || e.Reason == f.Reason) {
			out.Quarantined = append(out.Quarantined, e)
		}
	}
	sort.Slice(out.Quarantined, func(i, j int) bool { return out.Quarantined[i].AggregateID < out.Quarantined[j].AggregateID })
	return out, nil
}

// Show returns every dead letter (copies included) of aggregateID (at
// version, when > 0), or the one at the DLQ coordinates when aggregateID
// is empty, with its headers and value.
func (a *DLQAdmin) Show(ctx context.Context, aggregateID string, version int64, dlqPartition int32, dlqOffset int64) ([]DLQRecord, error) {
	all, _, err := a.scan(ctx)
	if err != nil {
		return nil, err
	}
	out := []DLQRecord{}
	for _, r := range all {
		match := r.AggregateID == aggregateID && (version <= 0 || r.Version == version)
		if aggregateID == "" {
			match = r.DLQPartition == dlqPartition && r.DLQOffset == dlqOffset
		}
		if !match {
			continue
		}
		r.Headers = map[string]string{}
		for _, h := range r.src.Headers {
			r.Headers[h.Key] = string(h.Value)
		}
		if json.Valid(r.src.Value) {
			r.Value = r.src.Value
		} else {
			r.Raw = truncate(string(r.src.Value), 64<<10)
		}
		out = append(out, r)
	}
	return out, nil
}

// scan reads the projection's dead letters (oldest first, per DLQ
// partition) with their status, and its quarantined aggregates.
func (a *DLQAdmin) scan(ctx context.Context) ([]DLQRecord, map[string]QuarantineEntry, error) {
	recs, _, err := readToEnd(ctx, a.conn, a.adm, envelope.DLQTopic(a.topic))
	if err != nil {
		return nil, nil, err
	}
	quar, err := readQuarantine(ctx, a.conn, a.adm, a.topic, a.proj.Name())
	if err != nil {
		return nil, nil, err
	}
	var out []DLQRecord
	ids := map[string]bool{}
	for _, r := range recs {
		d, ok := a.record(r)
		if !ok {
			continue
		}
		if d.AggregateID != "" {
			ids[d.AggregateID] = true
		}
		out = append(out, d)
	}
	versions, err := a.docVersions(ctx, ids)
	if err != nil {
		return nil, nil, err
	}
	for i := range out {
		r := &out[i]
		switch {
		case r.AggregateID == "":
			r.Status = StatusInvalid
		case versions[r.AggregateID] >= r.Version:
			r.Status, r.DocumentVersion = StatusResolved, versions[r.AggregateID]
		default:
			r.Status, r.DocumentVersion = StatusPending, versions[r.AggregateID]
		}
	}
	return out, quar, nil
}

// record reads one dead letter; false if it is another projection's.
func (a *DLQAdmin) record(r *kgo.Record) (DLQRecord, bool) {
	h, orig := dlqHeaders(r)
	if h[HeaderDLQProjection] != a.proj.Name() {
		return DLQRecord{}, false
	}
	src := source(r, h, orig)
	if src.Topic == "" { // not ours to guess: the projection's topic is the only one it reads
		src.Topic = a.topic
	}
	d := DLQRecord{DLQPartition: r.Partition, DLQOffset: r.Offset, ReasonCode: h[HeaderDLQReasonCode], Reason: h[HeaderDLQReason],
		AggregateID: h[HeaderDLQAggregateID], SourceTopic: src.Topic, SourcePartition: src.Partition, SourceOffset: src.Offset,
		Blocked: blockedOf(h), At: r.Timestamp.UTC(), Copies: 1, src: src}
	if t, err := time.Parse(time.RFC3339Nano, h[HeaderDLQAt]); err == nil {
		d.At = t
	}
	d.Version, _ = strconv.ParseInt(h[HeaderDLQVersion], 10, 64)
	if env, err := envelope.Decode(r.Value); err == nil && env.AggregateType == a.proj.AggregateType() {
		d.AggregateID, d.Version, d.EventType, d.EventID = env.AggregateID, env.Version, env.EventType, env.EventID
	}
	if d.ReasonCode == "" { // dead-lettered before reason codes existed
		d.ReasonCode = ReasonUnprojectable
		if d.AggregateID == "" {
			d.ReasonCode = ReasonInvalidEnvelope
		}
	}
	if len(d.AggregateID) > envelope.MaxAggregateIDBytes || d.Version < 1 {
		d.AggregateID, d.Version = "", 0
	}
	return d, true
}

// docVersions returns the read model's version of each aggregate (absent:
// no document).
func (a *DLQAdmin) docVersions(ctx context.Context, ids map[string]bool) (map[string]int64, error) {
	list := make([]string, 0, len(ids))
	for id := range ids {
		list = append(list, id)
	}
	sort.Strings(list)
	out := map[string]int64{}
	for start := 0; start < len(list); start += 1000 {
		hits, err := a.store.MGet(ctx, list[start:min(start+1000, len(list))])
		if err != nil {
			return nil, fmt.Errorf("reading the read model: %w", err)
		}
		for id, h := range hits {
			out[id] = h.Version
		}
	}
	return out, nil
}

// dedupe keeps the newest copy of each record (same aggregate, version
// and value), counting the copies, sorted by aggregate and version
// (records of no aggregate first, by DLQ position).
func dedupe(all []DLQRecord) []DLQRecord {
	idx := map[uint64]int{}
	var out []DLQRecord
	for _, r := range all {
		h := fnv.New64a()
		fmt.Fprintf(h, "%s\x00%d\x00", r.AggregateID, r.Version)
		h.Write(r.src.Value)
		k := h.Sum64()
		if i, ok := idx[k]; ok {
			copies := out[i].Copies + 1
			if r.DLQPartition == out[i].DLQPartition && r.DLQOffset > out[i].DLQOffset {
				out[i] = r
			}
			out[i].Copies = copies
			continue
		}
		idx[k] = len(out)
		out = append(out, r)
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.AggregateID != b.AggregateID {
			return a.AggregateID < b.AggregateID
		}
		if a.Version != b.Version {
			return a.Version < b.Version
		}
		if a.DLQPartition != b.DLQPartition {
			return a.DLQPartition < b.DLQPartition
		}
		return a.DLQOffset < b.DLQOffset
	})
	return out
}
