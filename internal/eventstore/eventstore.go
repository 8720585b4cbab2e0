// Package eventstore is the PostgreSQL event store of the write side: it
// loads an aggregate's history, lets the caller decide new events, and
// appends them together with their outbox rows (and the idempotency
// record of the request) in ONE transaction. It never talks to Kafka.
//
// Transaction layout (pgx batches keep round trips low; a plain create is
// one round trip, a load-decide-append two):
//
//	BEGIN
//	[claim idempotency key: INSERT … ON CONFLICT DO NOTHING]   waits for a concurrent holder of the key
//	lock the aggregate's head row in aggregates                 SELECT … FOR UPDATE, or the INSERT/upsert itself
//	[load the history: SELECT events … ORDER BY version]
//	— decide in Go —
//	advance the head row; INSERT events + outbox (one statement)
//	[store the response under the idempotency key]
//	COMMIT
//	— after commit, coalesced, in its own short transaction —
//	SELECT pg_notify(outbox.NotifyChannel, '<shard>')
//
// NOTIFY is deliberately not sent inside the append transaction:
// PostgreSQL takes a database-wide lock for a notifying commit and holds
// it through the WAL flush, which serializes every append (measured: ~2.7x
// fewer commands/s). A notifier goroutine sends the shards that received
// rows since its last round, one batch at a time and at most one round per
// 5 ms; a relay that LISTENs wakes within ~5 ms of the commit, and still
// polls for the rare notification lost to a crash between commit and
// notify.
//
// The head row lock is always taken BEFORE the events and outbox rows are
// inserted. Appends to one aggregate are therefore serialized, and the
// outbox ids (an identity column) of one aggregate are allocated in version
// order: the relay relies on that to publish in order.
package eventstore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"cqrsflow/internal/envelope"
	"cqrsflow/internal/outbox"
)

// Expected-version values besides a concrete version (>= 1).
const (
	// AnyVersion appends whatever the current version is.
	AnyVersion int64 = -1
	// NoAggregate requires that the aggregate does not exist yet (create).
	NoAggregate int64 = 0
)

// Sentinel errors callers branch on.
var (
	// ErrVersionConflict: the aggregate is not at the expected version.
	// The error is a *ConflictError carrying the current version.
	ErrVersionConflict = errors.New("version conflict")
	// ErrNotFound: a version was expected but the aggregate does not exist.
	ErrNotFound = errors.New("aggregate not found")
	// ErrIdempotencyMismatch: the idempotency key was used before with a
	// different request.
	ErrIdempotencyMismatch = errors.New("idempotency key reused with a different request")
)

// errKeyVanished: an idempotency key existed when claimed but was purged
// before it could be read; Execute retries.
var errKeyVanished = errors.New("idempotency key purged concurrently")

// ConflictError is an ErrVersionConflict with the versions involved.
type ConflictError struct {
	AggregateType string
	AggregateID   string
	Expected      int64
	Current       int64
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("version conflict on %s %s: expected %d, current %d",
		e.AggregateType, e.AggregateID, e.Expected, e.Current)
}

// Is makes errors.Is(err, ErrVersionConflict) true.
func (e *ConflictError) Is(target error) bool { return target == ErrVersionConflict }

// NewEvent is an event to append.
type NewEvent struct {
	Type          string
	SchemaVersion int
	Payload       json.RawMessage
}

// Event is a stored event as a fold needs it.
type Event struct {
	Version       int64
	Type          string
	SchemaVersion int
	Payload       json.RawMessage
}

// Appended describes one appended event.
type Appended struct {
	EventID        string
	Type           string
	Version        int64
	GlobalPosition int64
	RecordedAt     time.Time
}

// Idempotency attaches an idempotency key to a command. Response builds
// the response stored with the key (it is replayed verbatim to retries).
type Idempotency struct {
	Key         string
	Principal   string
	RequestHash []byte
	Response    func(Result) (status int, body []byte)
}

// Command is one write on one aggregate.
type Command struct {
	AggregateType   string
	AggregateID     string
	ExpectedVersion int64 // AnyVersion, NoAggregate or a version >= 1
	// Decide returns the events to append given the aggregate's history
	// (nil for a new aggregate). When Decide is nil, Events are appended.
	Decide      func(history []Event) ([]NewEvent, error)
	Events      []NewEvent
	Metadata    envelope.Metadata
	OccurredAt  time.Time
	Idempotency *Idempotency
}

// Result is the outcome of Execute.
type Result struct {
	Version  int64 // the aggregate's version after the command
	Appended []Appended
	// Replayed is true when the idempotency key had been used with the
	// same request: nothing was appended and Status/Body are the first
	// response.
	Replayed bool
	Status   int
	Body     []byte
}

// Store appends and loads events.
type Store struct {
	pool     *pgxpool.Pool
	notifier *notifier
	// afterInsert, when set (tests), runs after the events and outbox rows
	// were inserted and before commit; an error aborts the transaction.
	afterInsert func(ctx context.Context) error
}

// New returns a Store on pool. It starts the post-commit notifier; Close
// stops it.
func New(pool *pgxpool.Pool) *Store {
	return newStore(pool, outbox.NotifyChannel)
}

// newStore lets tests use their own channel: NOTIFY is database-wide, and
// tests share one database.
func newStore(pool *pgxpool.Pool, channel string) *Store {
	return &Store{pool: pool, notifier: startNotifier(pool, channel)}
}

// Close stops the notifier after sending what is pending. It does not
// close the pool.
func (s *Store) Close() { s.notifier.close() }

// Ping checks that PostgreSQL answers.
func (s *Store) Ping(ctx context.Context) error { return s.pool.Ping(ctx) }

const (
	claimKeySQL = `INSERT INTO idempotency_keys (principal, key, request_hash, status_code, response_body)
VALUES ($1, $2, $3, 0, '') ON CONFLICT (principal, key) DO NOTHING`
	readKeySQL  = `SELECT request_hash, status_code, response_body FROM idempotency_keys WHERE principal = $1 AND key = $2`
	storeKeySQL = `UPDATE idempotency_keys SET status_code = $3, response_body = $4 WHERE principal = $1 AND key = $2`

	lockHeadSQL = `SELECT version FROM aggregates WHERE aggregate_type = $1 AND aggregate_id = $2 FOR UPDATE`
	// Unconditional increment (AnyVersion without a fold): the upsert takes
	// the head row lock and returns the new version.
	upsertHeadSQL = `INSERT INTO aggregates AS a (aggregate_type, aggregate_id, version) VALUES ($1, $2, $3)
ON CONFLICT (aggregate_type, aggregate_id) DO UPDATE SET version = a.version + $3, updated_at = clock_timestamp()
RETURNING version`
	insertHeadSQL = `INSERT INTO aggregates (aggregate_type, aggregate_id, version) VALUES ($1, $2, $3)`
	updateHeadSQL = `UPDATE aggregates SET version = $3, updated_at = clock_timestamp()
WHERE aggregate_type = $1 AND aggregate_id = $2 AND version = $4`
	currentSQL = `SELECT version FROM aggregates WHERE aggregate_type = $1 AND aggregate_id = $2`

	loadSQL = `SELECT version, event_type, schema_version, payload FROM events
WHERE aggregate_type = $1 AND aggregate_id = $2 ORDER BY version`
)

// appendSQL inserts the events (versions base+1..base+n) and their outbox
// rows in one statement, outbox ids allocated in version order. It returns
// the aggregate's outbox shard for the notifier.
var appendSQL = `WITH ev AS (
  INSERT INTO events (event_id, aggregate_type, aggregate_id, version, event_type, schema_version, payload, metadata, occurred_at)
  SELECT x.event_id, $1, $2, $3::bigint + x.ord, x.event_type, x.schema_version, x.payload, $8::jsonb, $9
  FROM unnest($4::uuid[], $5::text[], $6::int[], $7::jsonb[]) WITH ORDINALITY AS x(event_id, event_type, schema_version, payload, ord)
  RETURNING *
), ob AS (
  INSERT INTO outbox (` + outbox.Columns + `)
  SELECT ` + outbox.FromEvents + ` FROM ev ORDER BY ev.version
)
SELECT event_id::text, event_type, version, global_position, recorded_at,
  ` + outbox.ShardSQL("$2") + `::int AS shard
FROM ev ORDER BY version`

// Execute runs one command: claim the idempotency key (if any), lock the
// aggregate, load and fold its history (if Decide is set), decide, append
// events + outbox rows, store the idempotent response, notify, commit.
func (s *Store) Execute(ctx context.Context, cmd Command) (Result, error) {
	if cmd.AggregateType == "" || cmd.AggregateID == "" {
		return Result{}, errors.New("eventstore: aggregate type and id are required")
	}
	if cmd.Decide == nil && len(cmd.Events) == 0 {
		return Result{}, errors.New("eventstore: no events to append")
	}
	if cmd.OccurredAt.IsZero() {
		cmd.OccurredAt = time.Now()
	}
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return Result{}, fmt.Errorf("acquiring connection: %w", err)
	}
	// Release destroys a connection left inside a transaction, so an error
	// path never returns a half-open transaction to the pool.
	defer conn.Release()
	res, err := s.execute(ctx, conn.Conn(), cmd)
	for attempt := 0; errors.Is(err, errKeyVanished) && attempt < 3; attempt++ {
		// The key row was purged between our claim and our read: claim again.
		res, err = s.execute(ctx, conn.Conn(), cmd)
	}
	if err != nil {
		if conn.Conn().PgConn().TxStatus() != 'I' {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			_, _ = conn.Exec(rctx, "ROLLBACK")
			cancel()
		}
		var pe *pgconn.PgError
		if errors.As(err, &pe) && pe.Code == "23505" && pe.TableName == "aggregates" {
			// Two creates of the same aggregate raced: report the winner's version.
			cur, _ := s.current(ctx, cmd.AggregateType, cmd.AggregateID)
			return Result{}, &ConflictError{cmd.AggregateType, cmd.AggregateID, cmd.ExpectedVersion, cur}
		}
		return Result{}, err
	}
	return res, nil
}

func (s *Store) current(ctx context.Context, typ, id string) (int64, error) {
	var v int64
	err := s.pool.QueryRow(ctx, currentSQL, typ, id).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil
	}
	return v, err
}

func (s *Store) execute(ctx context.Context, conn *pgx.Conn, cmd Command) (Result, error) {
	typ, id := cmd.AggregateType, cmd.AggregateID
	idem := cmd.Idempotency
	// A create whose events are known without a fold and without a key
	// needs no first step: everything goes in one batch.
	fold := cmd.Decide != nil && cmd.ExpectedVersion != NoAggregate
	upsert := cmd.Decide == nil && cmd.ExpectedVersion == AnyVersion

	b := &pgx.Batch{}
	b.Queue("BEGIN")
	claimed := true
	if idem != nil {
		b.Queue(claimKeySQL, idem.Principal, idem.Key, idem.RequestHash).Exec(func(ct pgconn.CommandTag) error {
			claimed = ct.RowsAffected() == 1
			return nil
		})
	}
	var current int64 = -1 // unknown until the head row is locked
	var history []Event
	step1 := idem != nil
	switch {
	case upsert:
		step1 = true
		n := int64(len(cmd.Events))
		b.Queue(upsertHeadSQL, typ, id, n).QueryRow(func(row pgx.Row) error {
			var v int64
			if err := row.Scan(&v); err != nil {
				return err
			}
			current = v - n
			return nil
		})
	case cmd.ExpectedVersion != NoAggregate:
		step1 = true
		b.Queue(lockHeadSQL, typ, id).QueryRow(func(row pgx.Row) error {
			err := row.Scan(&current)
			if errors.Is(err, pgx.ErrNoRows) {
				current = 0
				return nil
			}
			return err
		})
		if fold {
			b.Queue(loadSQL, typ, id).Query(func(rows pgx.Rows) error {
				var err error
				history, err = scanEvents(rows)
				return err
			})
		}
	default: // NoAggregate: the INSERT of the head row below is the lock.
		current = 0
	}

	if step1 {
		if err := conn.SendBatch(ctx, b).Close(); err != nil {
			return Result{}, fmt.Errorf("locking %s %s: %w", typ, id, err)
		}
		b = &pgx.Batch{}
		if !claimed {
			return s.replay(ctx, conn, idem)
		}
		if cmd.ExpectedVersion > 0 && current == 0 {
			return Result{}, ErrNotFound
		}
		if cmd.ExpectedVersion >= 0 && current != cmd.ExpectedVersion {
			return Result{}, &ConflictError{typ, id, cmd.ExpectedVersion, current}
		}
	}

	events := cmd.Events
	if cmd.Decide != nil {
		var err error
		if events, err = cmd.Decide(history); err != nil {
			return Result{}, err
		}
	}
	n := int64(len(events))
	newVersion := current + n
	if upsert {
		newVersion = current + n // head already advanced by the upsert
	} else if n > 0 {
		if current == 0 {
			b.Queue(insertHeadSQL, typ, id, newVersion)
		} else {
			b.Queue(updateHeadSQL, typ, id, newVersion, current).Exec(func(ct pgconn.CommandTag) error {
				if ct.RowsAffected() != 1 {
					return fmt.Errorf("head row of %s %s moved while locked", typ, id)
				}
				return nil
			})
		}
	}

	res := Result{Version: newVersion}
	shard := -1
	if n > 0 {
		meta, err := json.Marshal(cmd.Metadata)
		if err != nil {
			return Result{}, fmt.Errorf("encoding metadata: %w", err)
		}
		ids := make([]string, n)
		types := make([]string, n)
		versions := make([]int32, n)
		payloads := make([]string, n)
		for i, e := range events {
			u, err := uuid.NewV7()
			if err != nil {
				return Result{}, fmt.Errorf("event id: %w", err)
			}
			ids[i], types[i], versions[i], payloads[i] = u.String(), e.Type, int32(e.SchemaVersion), string(e.Payload)
		}
		b.Queue(appendSQL, typ, id, current, ids, types, versions, payloads, string(meta), cmd.OccurredAt).
			Query(func(rows pgx.Rows) error {
				for rows.Next() {
					var a Appended
					if err := rows.Scan(&a.EventID, &a.Type, &a.Version, &a.GlobalPosition, &a.RecordedAt, &shard); err != nil {
						return err
					}
					res.Appended = append(res.Appended, a)
				}
				return rows.Err()
			})
	}
	if s.afterInsert != nil {
		if err := conn.SendBatch(ctx, b).Close(); err != nil {
			return Result{}, fmt.Errorf("appending to %s %s: %w", typ, id, err)
		}
		if err := s.afterInsert(ctx); err != nil {
			return Result{}, err
		}
		b = &pgx.Batch{}
	}
	if idem != nil {
		res.Status, res.Body = idem.Response(res)
		b.Queue(storeKeySQL, idem.Principal, idem.Key, res.Status, res.Body)
	}
	var committed bool
	b.Queue("COMMIT").Exec(func(ct pgconn.CommandTag) error {
		committed = ct.String() == "COMMIT"
		return nil
	})
	if err := conn.SendBatch(ctx, b).Close(); err != nil {
		return Result{}, fmt.Errorf("appending to %s %s: %w", typ, id, err)
	}
	if !committed {
		return Result{}, fmt.Errorf("appending to %s %s: transaction rolled back", typ, id)
	}
	if int64(len(res.Appended)) != n {
		return Result{}, fmt.Errorf("appending to %s %s: %d of %d events returned", typ, id, len(res.Appended), n)
	}
	if shard >= 0 {
		s.notifier.add(shard)
	}
	return res, nil
}

// replay answers a request whose idempotency key exists: the stored
// response if the request is the same, ErrIdempotencyMismatch otherwise.
func (s *Store) replay(ctx context.Context, conn *pgx.Conn, idem *Idempotency) (Result, error) {
	var hash, body []byte
	var status int
	err := conn.QueryRow(ctx, readKeySQL, idem.Principal, idem.Key).Scan(&hash, &status, &body)
	if errors.Is(err, pgx.ErrNoRows) {
		if _, err := conn.Exec(ctx, "ROLLBACK"); err != nil {
			return Result{}, fmt.Errorf("rolling back: %w", err)
		}
		return Result{}, errKeyVanished
	}
	if err != nil {
		return Result{}, fmt.Errorf("reading idempotency key: %w", err)
	}
	if _, err := conn.Exec(ctx, "ROLLBACK"); err != nil {
		return Result{}, fmt.Errorf("rolling back: %w", err)
	}
	if !bytes.Equal(hash, idem.RequestHash) {
		return Result{}, ErrIdempotencyMismatch
	}
	return Result{Replayed: true, Status: status, Body: body}, nil
}

func scanEvents(rows pgx.Rows) ([]Event, error) {
	var out []Event
	for rows.Next() {
		var e Event
		var payload []byte
		if err := rows.Scan(&e.Version, &e.Type, &e.SchemaVersion, &payload); err != nil {
			return nil, err
		}
		e.Payload = payload
		out = append(out, e)
	}
	return out, rows.Err()
}

// Load returns the events of one aggregate in version order.
func (s *Store) Load(ctx context.Context, aggregateType, aggregateID string) ([]Event, error) {
	rows, err := s.pool.Query(ctx, loadSQL, aggregateType, aggregateID)
	if err != nil {
		return nil, fmt.Errorf("loading %s %s: %w", aggregateType, aggregateID, err)
	}
	defer rows.Close()
	evs, err := scanEvents(rows)
	if err != nil {
		return nil, fmt.Errorf("loading %s %s: %w", aggregateType, aggregateID, err)
	}
	return evs, nil
}

// Update is the repository form of Execute: load the aggregate at
// expectedVersion (AnyVersion for none), fold its history in fn, append
// what fn decides, all in one transaction. It returns the new version.
func (s *Store) Update(ctx context.Context, aggregateType, aggregateID string, expectedVersion int64,
	fn func(history []Event) ([]NewEvent, error)) (int64, error) {
	if expectedVersion == NoAggregate {
		return 0, errors.New("eventstore: Update needs an existing aggregate; use Create")
	}
	res, err := s.Execute(ctx, Command{AggregateType: aggregateType, AggregateID: aggregateID,
		ExpectedVersion: expectedVersion, Decide: fn})
	return res.Version, err
}

// Create appends the first events of a new aggregate.
func (s *Store) Create(ctx context.Context, aggregateType, aggregateID string, events []NewEvent) (int64, error) {
	res, err := s.Execute(ctx, Command{AggregateType: aggregateType, AggregateID: aggregateID,
		ExpectedVersion: NoAggregate, Events: events})
	return res.Version, err
}

// Append appends events at expectedVersion (AnyVersion: whatever the
// current version is) without loading the history.
func (s *Store) Append(ctx context.Context, aggregateType, aggregateID string, expectedVersion int64, events []NewEvent) (int64, error) {
	res, err := s.Execute(ctx, Command{AggregateType: aggregateType, AggregateID: aggregateID,
		ExpectedVersion: expectedVersion, Events: events})
	return res.Version, err
}

// PurgeIdempotencyKeys deletes idempotency keys stored more than ttl ago
// and returns how many it deleted. A retry after that appends again.
func (s *Store) PurgeIdempotencyKeys(ctx context.Context, ttl time.Duration) (int64, error) {
	ct, err := s.pool.Exec(ctx, `DELETE FROM idempotency_keys WHERE created_at < clock_timestamp() - $1::interval`,
		fmt.Sprintf("%d microseconds", ttl.Microseconds()))
	if err != nil {
		return 0, fmt.Errorf("purging idempotency keys: %w", err)
	}
	return ct.RowsAffected(), nil
}

// PurgeLoop calls PurgeIdempotencyKeys every interval until ctx ends,
// reporting each outcome to report (count, error).
func (s *Store) PurgeLoop(ctx context.Context, ttl, interval time.Duration, report func(int64, error)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			n, err := s.PurgeIdempotencyKeys(ctx, ttl)
			if ctx.Err() == nil {
				report(n, err)
			}
		}
	}
}

// IsUnavailable reports whether err means PostgreSQL could not be reached,
// timed out or is shutting down (HTTP 503), as opposed to a statement
// PostgreSQL rejected.
func IsUnavailable(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		pgconn.Timeout(err) {
		return true
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code[:2] {
		case "08", "53", "57": // connection exception, insufficient resources, operator intervention
			return true
		}
		return pe.Code == "40001" || pe.Code == "40P01" // serialization failure, deadlock: retry later
	}
	var ce *pgconn.ConnectError
	var ne net.Error
	return errors.As(err, &ce) || errors.As(err, &ne)
}
