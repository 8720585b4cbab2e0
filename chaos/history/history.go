// Package history holds what a chaos run records: every HTTP attempt of the
// workload and every fault of the nemesis, one JSON object per line of the
// history file, in the order they ended. The checker judges the run from
// these records and from the final state of the store, Kafka and
// Elasticsearch.
package history

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// Operation types of the workload.
const (
	CreateProduct = "create_product"
	UpdateProduct = "update_product"
	DeleteProduct = "delete_product"
	CreateOrder   = "create_order"
	PayOrder      = "pay_order"
	ShipOrder     = "ship_order"
	CancelOrder   = "cancel_order"
	ReadProduct   = "read_product"
	ReadOrder     = "read_order"
	// SearchProducts is a full-text product search: its answer is a page
	// of products, not one aggregate (Attempt.ID is empty).
	SearchProducts = "search_products"
)

// IsRead reports whether an operation type is a query.
func IsRead(typ string) bool { return typ == ReadProduct || typ == ReadOrder || typ == SearchProducts }

// Attempt is one HTTP request of an operation. A keyed operation whose
// answer was ambiguous (timeout, dropped connection, 5xx) is retried with
// the same Idempotency-Key, method, path, If-Match and body: its attempts
// share Op and count up in N.
type Attempt struct {
	Record     string            `json:"record"` // "attempt"
	Op         int64             `json:"op"`
	N          int               `json:"attempt"`
	Client     int               `json:"client"`
	Type       string            `json:"type"`
	Aggregate  string            `json:"aggregate"` // product | order
	ID         string            `json:"id,omitempty"`
	Method     string            `json:"method"`
	Path       string            `json:"path"`
	IfMatch    int64             `json:"if_match,omitempty"`
	MinVersion int64             `json:"min_version,omitempty"`
	IdemKey    string            `json:"idempotency_key,omitempty"`
	Misuse     bool              `json:"misuse,omitempty"` // reuses an acknowledged operation's key for another request
	RequestID  string            `json:"request_id"`
	Body       json.RawMessage   `json:"body,omitempty"`
	Start      time.Time         `json:"start"`
	End        time.Time         `json:"end"`
	Status     int               `json:"status"` // 0: no response
	Err        string            `json:"err,omitempty"`
	Resp       json.RawMessage   `json:"resp,omitempty"`
	Headers    map[string]string `json:"headers,omitempty"`
}

// Response headers the history keeps.
const (
	HeaderReplayed     = "Idempotent-Replayed"
	HeaderStale        = "X-Read-Model-Stale"
	HeaderModelVersion = "X-Read-Model-Version"
	HeaderETag         = "Etag"
)

// Ack is the body of a successful write.
type Ack struct {
	ID      string `json:"id"`
	Version int64  `json:"version"`
}

// Ack decodes a 2xx write answer; ok is false for anything else.
func (a *Attempt) Ack() (Ack, bool) {
	var ack Ack
	if a.Status < 200 || a.Status > 299 || IsRead(a.Type) {
		return ack, false
	}
	if err := json.Unmarshal(a.Resp, &ack); err != nil || ack.ID == "" || ack.Version < 1 {
		return ack, false
	}
	return ack, true
}

// Definite reports whether the attempt got an answer that says what
// happened: a 2xx (applied) or a 4xx (nothing applied). Timeouts, dropped
// connections and 5xx leave it open.
func (a *Attempt) Definite() bool { return a.Status >= 200 && a.Status < 500 }

// ErrorCode is the error.code of a JSON error answer ("" if none).
func (a *Attempt) ErrorCode() string {
	var e struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	_ = json.Unmarshal(a.Resp, &e)
	return e.Error.Code
}

// Fault kinds the checker treats apart (the nemesis package names them
// all; it imports this one).
const (
	KindPoison   = "poison"   // records written straight to an event topic: Keys are theirs
	KindOversize = "oversize" // events written straight to the event store: Keys and Appended
)

// Fault is one fault the nemesis injected, with what it checked to be sure
// the fault was real (Verified) and when it was healed.
type Fault struct {
	Record   string        `json:"record"` // "fault"
	Seq      int           `json:"seq"`
	Kind     string        `json:"kind"`
	Target   string        `json:"target"`
	Param    string        `json:"param,omitempty"`
	Planned  time.Duration `json:"planned_ns"` // offset from the start of the run in the schedule
	Hold     time.Duration `json:"hold_ns"`
	Start    time.Time     `json:"start"`
	Healed   time.Time     `json:"healed"`
	Verified []string      `json:"verified,omitempty"`
	// Keys are the poison records' keys (poison), or the aggregate id the
	// nemesis appended to (oversize). Set before the fault is tried, so a
	// failed injection still names what it may have written.
	Keys []string `json:"keys,omitempty"`
	// Appended are the events an oversize fault committed to the event
	// store, as read back after the commit.
	Appended []Appended `json:"appended,omitempty"`
	Err      string     `json:"err,omitempty"`
}

// Appended is one event the nemesis appended straight to the event store,
// with its outbox row.
type Appended struct {
	AggregateType string `json:"aggregate_type"`
	AggregateID   string `json:"aggregate_id"`
	Version       int64  `json:"version"`
	EventID       string `json:"event_id"`
	OutboxID      int64  `json:"outbox_id"`
	Shard         int16  `json:"shard"`         // the outbox row's (generated) shard
	PayloadBytes  int    `json:"payload_bytes"` // the payload as stored (jsonb text)
}

// Writer appends records to a history file; safe for concurrent use.
type Writer struct {
	mu  sync.Mutex
	f   *os.File
	w   *bufio.Writer
	err error
}

// Create opens path for writing (truncating it).
func Create(path string) (*Writer, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("creating history file: %w", err)
	}
	return &Writer{f: f, w: bufio.NewWriterSize(f, 64<<10)}, nil
}

// Add writes one record as a JSON line. The first error is kept and
// returned by Close.
func (w *Writer) Add(rec any) {
	b, err := json.Marshal(rec)
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return
	}
	if err != nil {
		w.err = fmt.Errorf("encoding history record: %w", err)
		return
	}
	b = append(b, '\n')
	if _, err := w.w.Write(b); err != nil {
		w.err = fmt.Errorf("writing history: %w", err)
	}
}

// Close flushes and closes the file.
func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	err := errors.Join(w.err, w.w.Flush(), w.f.Close())
	if w.err == nil {
		w.err = errors.New("history writer closed")
	}
	return err
}

// Read parses a history file back into attempts and faults.
func Read(r io.Reader) ([]Attempt, []Fault, error) {
	var (
		attempts []Attempt
		faults   []Fault
	)
	dec := json.NewDecoder(r)
	for {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err == io.EOF {
			return attempts, faults, nil
		} else if err != nil {
			return nil, nil, fmt.Errorf("reading history: %w", err)
		}
		var head struct {
			Record string `json:"record"`
		}
		if err := json.Unmarshal(raw, &head); err != nil {
			return nil, nil, fmt.Errorf("reading history: %w", err)
		}
		switch head.Record {
		case "attempt":
			var a Attempt
			if err := json.Unmarshal(raw, &a); err != nil {
				return nil, nil, fmt.Errorf("reading history attempt: %w", err)
			}
			attempts = append(attempts, a)
		case "fault":
			var f Fault
			if err := json.Unmarshal(raw, &f); err != nil {
				return nil, nil, fmt.Errorf("reading history fault: %w", err)
			}
			faults = append(faults, f)
		default:
			return nil, nil, fmt.Errorf("reading history: unknown record %q", head.Record)
		}
	}
}
