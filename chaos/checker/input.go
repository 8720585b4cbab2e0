// Package checker judges a chaos run: from the history of the workload and
// the nemesis and from the final state of the event store, Kafka and
// Elasticsearch it checks the pipeline's guarantees and lists every
// violation with its key. It is pure (no I/O): the harness collects the
// Input, the tests build Inputs by hand that break each invariant.
package checker

import (
	"encoding/json"
	"sort"
	"time"

	"cqrsflow/chaos/history"
)

// Event is one row of the event store.
type Event struct {
	GlobalPosition int64           `json:"global_position"`
	EventID        string          `json:"event_id"`
	AggregateType  string          `json:"aggregate_type"`
	AggregateID    string          `json:"aggregate_id"`
	Version        int64           `json:"version"`
	Type           string          `json:"event_type"`
	SchemaVersion  int             `json:"schema_version"`
	Payload        json.RawMessage `json:"payload"`
	Metadata       Metadata        `json:"metadata"`
	OccurredAt     time.Time       `json:"occurred_at"`
	RecordedAt     time.Time       `json:"recorded_at"`
}

// Metadata is the part of an event's metadata the checker reads.
type Metadata struct {
	CorrelationID  string `json:"correlation_id,omitempty"`
	CausationID    string `json:"causation_id,omitempty"`
	IdempotencyKey string `json:"idempotency_key,omitempty"`
	RequestID      string `json:"request_id,omitempty"`
	Principal      string `json:"principal,omitempty"`
}

// OutboxRow is one row of the outbox.
type OutboxRow struct {
	ID            int64
	AggregateType string
	AggregateID   string
	Version       int64
	EventID       string
}

// DeadLetter is one row of outbox_dead_letters: an outbox row the relay
// gave up on (its id is the outbox id).
type DeadLetter struct {
	ID            int64
	AggregateType string
	AggregateID   string
	Version       int64
	EventID       string
	Reason        string // a Kafka error name, "envelope" or "other"
	Error         string
	Attempts      int
}

// Record is one Kafka record.
type Record struct {
	Topic     string
	Partition int32
	Offset    int64
	Key       string
	Value     []byte
	Headers   map[string]string
}

// Doc is one Elasticsearch document of a read model.
type Doc struct {
	ID        string
	ESVersion int64 // _version (the projector writes the aggregate version as external version)
	Source    json.RawMessage
}

// Sample is one metric value scraped from a process at the end.
type Sample struct {
	Process string
	Name    string
	Labels  map[string]string
	Value   float64
}

// LogHit is a log line that must not exist (a panic, a fatal error, a
// data race report).
type LogHit struct {
	Process string
	File    string
	Line    int
	Text    string
}

// Exit is a binary's process ending.
type Exit struct {
	Process  string
	At       time.Time
	Status   string // "exit status 1", "signal: killed"…
	Expected bool   // the nemesis or the harness ended it
	Graceful bool   // ended by SIGTERM: must exit 0
	// DuringStartup: the process had not answered /healthz since it was
	// started (a dependency down at start-up); reported, not a violation.
	DuringStartup bool
	Reason        string // the last log line of an unexpected exit
}

// Hang is a process that stayed alive without answering /healthz.
type Hang struct {
	Process string
	At      time.Time
	Msg     string
}

// Input is everything the checks read.
type Input struct {
	Principal string // the workload's API key id
	Attempts  []history.Attempt
	Faults    []history.Fault
	Events    []Event
	// Outbox are the rows left in the outbox at the end, DeadLetters the
	// rows of outbox_dead_letters.
	Outbox      []OutboxRow
	DeadLetters []DeadLetter
	// PoisonAttempts is the relay's POISON_ATTEMPTS: a dead letter was
	// refused at least this often (0: not checked).
	PoisonAttempts int
	// Topics maps an aggregate type to its event topic; Records are all
	// records of those topics, Partitions their partition counts.
	Topics     map[string]string
	Records    []Record
	Partitions map[string]int32
	DLQ        []Record
	// Docs maps an aggregate type to its read model's documents.
	Docs     map[string][]Doc
	GroupLag map[string]int64 // consumer group → end offsets − committed offsets
	Metrics  []Sample
	// MetricProcs are the processes scraped at the end (each must report).
	MetricProcs []string
	LogHits     []LogHit
	// DriftLogs are the projectors' continuous verification reporting a
	// document that is not the fold of its events.
	DriftLogs []LogHit
	LogLines  int // lines scanned
	Exits     []Exit
	Hangs     []Hang
	Starts    int // binary starts
	// HealedAt is when the last fault ended; writes after it show the
	// pipeline recovered.
	HealedAt time.Time
	// Grace is how long after an unavailability fault a 503 is still
	// expected (pools reconnect, crash recovery finishes).
	Grace time.Duration
}

// Violation is one broken guarantee.
type Violation struct {
	Key string    // aggregate id, idempotency key, process…
	Msg string    // what is wrong
	At  time.Time // when, if known
}

// Result is one invariant's outcome.
type Result struct {
	ID         string
	Desc       string
	Checked    int
	Violations []Violation
}

// OK reports whether the invariant held.
func (r Result) OK() bool { return len(r.Violations) == 0 }

func (r *Result) fail(key string, at time.Time, format string, args ...any) {
	r.Violations = append(r.Violations, Violation{Key: key, At: at, Msg: sprintf(format, args...)})
}

// op is an operation of the workload: its attempts in order.
type op struct {
	attempts []history.Attempt
}

func (o *op) first() *history.Attempt { return &o.attempts[0] }

// acks are the 2xx answers of the operation.
func (o *op) acks() (acks []history.Ack, acked bool) {
	for i := range o.attempts {
		a := &o.attempts[i]
		if a.Status >= 200 && a.Status < 300 {
			acked = true
			if ack, ok := a.Ack(); ok {
				acks = append(acks, ack)
			}
		}
	}
	return acks, acked
}

// refused reports whether an attempt got a definite refusal (4xx).
func (o *op) refused() (*history.Attempt, bool) {
	for i := range o.attempts {
		if s := o.attempts[i].Status; s >= 400 && s < 500 {
			return &o.attempts[i], true
		}
	}
	return nil, false
}

// index is the Input arranged for lookups.
type index struct {
	in        *Input
	ops       []*op
	byAgg     map[string][]Event // aggregate id → events by version
	byEventID map[string]*Event
	byReqID   map[string][]*Event
	byKey     map[string][]*Event
	attempt   map[string]*history.Attempt // request id → attempt
	opOf      map[string]*op              // request id → operation
	aggType   map[string]string           // aggregate id → type
	// oversize are the aggregates oversize faults appended to (or may
	// have: a failed injection names its key too), byFault their fault.
	oversize map[string]*history.Fault
}

func newIndex(in *Input) *index {
	x := &index{in: in, byAgg: map[string][]Event{}, byEventID: map[string]*Event{}, byReqID: map[string][]*Event{},
		byKey: map[string][]*Event{}, attempt: map[string]*history.Attempt{}, opOf: map[string]*op{}, aggType: map[string]string{},
		oversize: map[string]*history.Fault{}}
	for i := range in.Faults {
		f := &in.Faults[i]
		if f.Kind != history.KindOversize {
			continue
		}
		for _, k := range f.Keys {
			x.oversize[k] = f
		}
		for _, a := range f.Appended {
			x.oversize[a.AggregateID] = f
		}
	}
	ops := map[int64]*op{}
	for i := range in.Attempts {
		a := &in.Attempts[i]
		o := ops[a.Op]
		if o == nil {
			o = &op{}
			ops[a.Op] = o
			x.ops = append(x.ops, o)
		}
		o.attempts = append(o.attempts, *a)
	}
	for _, o := range x.ops {
		sort.Slice(o.attempts, func(i, j int) bool { return o.attempts[i].N < o.attempts[j].N })
		for i := range o.attempts {
			x.attempt[o.attempts[i].RequestID] = &o.attempts[i]
			x.opOf[o.attempts[i].RequestID] = o
		}
	}
	sort.Slice(x.ops, func(i, j int) bool { return x.ops[i].first().Op < x.ops[j].first().Op })
	for _, e := range in.Events {
		x.byAgg[e.AggregateID] = append(x.byAgg[e.AggregateID], e)
		x.aggType[e.AggregateID] = e.AggregateType
	}
	for id, evs := range x.byAgg {
		sort.Slice(evs, func(i, j int) bool { return evs[i].Version < evs[j].Version })
		x.byAgg[id] = evs
		for i := range evs {
			e := &evs[i]
			x.byEventID[e.EventID] = e
			x.byReqID[e.Metadata.RequestID] = append(x.byReqID[e.Metadata.RequestID], e)
			if e.Metadata.IdempotencyKey != "" && e.Metadata.Principal == in.Principal {
				x.byKey[e.Metadata.IdempotencyKey] = append(x.byKey[e.Metadata.IdempotencyKey], e)
			}
		}
	}
	return x
}

// event returns the event of an aggregate at a version.
func (x *index) event(id string, version int64) *Event {
	evs := x.byAgg[id]
	i := sort.Search(len(evs), func(i int) bool { return evs[i].Version >= version })
	if i < len(evs) && evs[i].Version == version {
		return &evs[i]
	}
	return nil
}

// Check runs every invariant.
func Check(in *Input) []Result {
	x := newIndex(in)
	return []Result{
		x.ackDurable(), x.idempotentOnce(), x.noPhantomWrite(), x.ifMatch(), x.refusalsJustified(), x.domainSequence(),
		x.kafkaComplete(), x.kafkaFaithful(), x.kafkaPartition(), x.kafkaOrder(), x.dlq(), x.relayDeadLetters(),
		x.readModel(), x.noOrphanDoc(), x.reads(),
		x.drained(), x.metricsTruthful(), x.http5xx(), x.noPanic(), x.noDrift(), x.processes(), x.faultsVerified(), x.recovered(),
	}
}
