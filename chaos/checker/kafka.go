package checker

import (
	"encoding/json"
	"sort"
	"time"

	"cqrsflow/chaos/history"
)

// envelope is the Kafka value of an event, as the README defines it.
type envelope struct {
	EventID        string          `json:"event_id"`
	EventType      string          `json:"event_type"`
	SchemaVersion  int             `json:"schema_version"`
	AggregateType  string          `json:"aggregate_type"`
	AggregateID    string          `json:"aggregate_id"`
	Version        int64           `json:"version"`
	OccurredAt     time.Time       `json:"occurred_at"`
	RecordedAt     time.Time       `json:"recorded_at"`
	GlobalPosition int64           `json:"global_position"`
	Payload        json.RawMessage `json:"payload"`
	Metadata       Metadata        `json:"metadata"`
}

// poisonKeys are the keys of the records the nemesis wrote to the event
// topics on purpose (poison faults; an oversize fault's key is an
// aggregate of the store, which must not reach Kafka at all).
func (x *index) poisonKeys() map[string]bool {
	keys := map[string]bool{}
	for _, f := range x.in.Faults {
		if f.Kind != history.KindPoison {
			continue
		}
		for _, k := range f.Keys {
			keys[k] = true
		}
	}
	return keys
}

func (x *index) kafkaComplete() Result {
	r := Result{ID: "kafka-complete", Desc: "every event of the store is in its aggregate type's Kafka topic (but the oversize faults' aggregates: relay-dead-letters)"}
	in := map[string]string{} // event id → topic
	for _, rec := range x.in.Records {
		var env envelope
		if json.Unmarshal(rec.Value, &env) == nil && env.EventID != "" {
			in[env.EventID] = rec.Topic
		}
	}
	for _, e := range x.in.Events {
		if x.oversize[e.AggregateID] != nil {
			continue // dead-lettered and held: relay-dead-letters checks they are not in Kafka
		}
		r.Checked++
		topic, ok := in[e.EventID]
		switch {
		case !ok:
			r.fail(e.AggregateID, e.RecordedAt, "v%d (%s, event %s) is not in Kafka", e.Version, e.Type, e.EventID)
		case topic != x.in.Topics[e.AggregateType]:
			r.fail(e.AggregateID, e.RecordedAt, "v%d is in topic %s, not %s", e.Version, topic, x.in.Topics[e.AggregateType])
		}
	}
	return r
}

func (x *index) kafkaFaithful() Result {
	r := Result{ID: "kafka-faithful", Desc: "every Kafka record is an event of the store, keyed by its aggregate id, with the store's fields"}
	poison := x.poisonKeys()
	for _, rec := range x.in.Records {
		if poison[rec.Key] {
			continue
		}
		r.Checked++
		var env envelope
		if err := json.Unmarshal(rec.Value, &env); err != nil {
			r.fail(rec.Key, time.Time{}, "%s:%d@%d is not an envelope: %v", rec.Topic, rec.Partition, rec.Offset, err)
			continue
		}
		e := x.byEventID[env.EventID]
		if e == nil {
			r.fail(rec.Key, time.Time{}, "%s:%d@%d carries event %s (%s v%d), which the store does not have", rec.Topic, rec.Partition, rec.Offset, env.EventID, env.AggregateID, env.Version)
			continue
		}
		same, _ := sameJSON(env.Payload, e.Payload)
		var bad []string
		check := func(ok bool, field string, got, want any) {
			if !ok {
				bad = append(bad, sprintf("%s %v (store %v)", field, got, want))
			}
		}
		check(rec.Key == e.AggregateID, "key", rec.Key, e.AggregateID)
		check(env.AggregateID == e.AggregateID, "aggregate_id", env.AggregateID, e.AggregateID)
		check(env.AggregateType == e.AggregateType, "aggregate_type", env.AggregateType, e.AggregateType)
		check(env.Version == e.Version, "version", env.Version, e.Version)
		check(env.EventType == e.Type, "event_type", env.EventType, e.Type)
		check(env.SchemaVersion == e.SchemaVersion, "schema_version", env.SchemaVersion, e.SchemaVersion)
		check(env.GlobalPosition == e.GlobalPosition, "global_position", env.GlobalPosition, e.GlobalPosition)
		check(env.OccurredAt.Equal(e.OccurredAt), "occurred_at", env.OccurredAt, e.OccurredAt)
		check(env.RecordedAt.Equal(e.RecordedAt), "recorded_at", env.RecordedAt, e.RecordedAt)
		check(same, "payload", string(env.Payload), string(e.Payload))
		check(env.Metadata == e.Metadata, "metadata", env.Metadata, e.Metadata)
		check(rec.Headers["event_id"] == e.EventID, "header event_id", rec.Headers["event_id"], e.EventID)
		check(rec.Headers["event_type"] == e.Type, "header event_type", rec.Headers["event_type"], e.Type)
		if len(bad) > 0 {
			r.fail(rec.Key, e.RecordedAt, "%s:%d@%d (v%d) differs from the store: %v", rec.Topic, rec.Partition, rec.Offset, e.Version, bad)
		}
	}
	return r
}

func (x *index) kafkaPartition() Result {
	r := Result{ID: "kafka-partition", Desc: "every record is in its key's murmur2 partition (the Java client's partitioner)"}
	poison := x.poisonKeys()
	for _, rec := range x.in.Records {
		if poison[rec.Key] {
			continue
		}
		r.Checked++
		n := x.in.Partitions[rec.Topic]
		if n < 1 {
			r.fail(rec.Key, time.Time{}, "topic %s has no partition count", rec.Topic)
			continue
		}
		if want := partitionOf(rec.Key, n); rec.Partition != want {
			r.fail(rec.Key, time.Time{}, "%s offset %d is in partition %d, murmur2 puts the key in %d of %d", rec.Topic, rec.Offset, rec.Partition, want, n)
		}
	}
	return r
}

// DuplicateRecords counts records that repeat an event already in Kafka
// (allowed: the relay publishes at least once).
func DuplicateRecords(in *Input) int {
	seen := map[string]bool{}
	dups := 0
	for _, rec := range in.Records {
		id := rec.Headers["event_id"]
		if id == "" {
			continue
		}
		if seen[id] {
			dups++
		}
		seen[id] = true
	}
	return dups
}

func (x *index) kafkaOrder() Result {
	r := Result{ID: "kafka-order", Desc: "per key, the first occurrence of each version comes after the first occurrence of the previous one (duplicates and replays of older versions allowed)"}
	poison := x.poisonKeys()
	recs := make([]Record, 0, len(x.in.Records))
	for _, rec := range x.in.Records {
		if !poison[rec.Key] {
			recs = append(recs, rec)
		}
	}
	sort.SliceStable(recs, func(i, j int) bool {
		a, b := recs[i], recs[j]
		if a.Topic != b.Topic {
			return a.Topic < b.Topic
		}
		if a.Partition != b.Partition {
			return a.Partition < b.Partition
		}
		return a.Offset < b.Offset
	})
	nextVersion := map[string]int64{} // topic/key → next version expected
	bad := map[string]bool{}
	for _, rec := range recs {
		var env envelope
		if json.Unmarshal(rec.Value, &env) != nil {
			continue // kafka-faithful reports it
		}
		k := rec.Topic + "/" + rec.Key
		if _, ok := nextVersion[k]; !ok {
			nextVersion[k] = 1
			r.Checked++
		}
		switch want := nextVersion[k]; {
		case env.Version == want:
			nextVersion[k]++
		case env.Version > want && !bad[k]:
			bad[k] = true
			r.fail(rec.Key, env.RecordedAt, "%s:%d@%d holds v%d before any v%d", rec.Topic, rec.Partition, rec.Offset, env.Version, want)
		}
	}
	return r
}

func (x *index) dlq() Result {
	r := Result{ID: "dlq", Desc: "every poison record written by the nemesis is in its dead-letter topic with a reason; no event of the store is there"}
	poison := x.poisonKeys()
	inDLQ := map[string]bool{}
	for _, rec := range x.in.DLQ {
		r.Checked++
		if !poison[rec.Key] {
			r.fail(rec.Key, time.Time{}, "%s:%d@%d: a record that is not poison went to the dead-letter topic (reason %q)", rec.Topic, rec.Partition, rec.Offset, rec.Headers["x-dlq-reason"])
			continue
		}
		if rec.Headers["x-dlq-reason"] == "" {
			r.fail(rec.Key, time.Time{}, "%s:%d@%d has no x-dlq-reason header", rec.Topic, rec.Partition, rec.Offset)
		}
		inDLQ[rec.Key] = true
	}
	for k := range poison {
		r.Checked++
		if !inDLQ[k] {
			r.fail(k, time.Time{}, "poison record %s is not in the dead-letter topic", k)
		}
	}
	return r
}
