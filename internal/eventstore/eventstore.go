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
//	[load the snapshot and the events after it (DecideFrom), or the whole history (Decide)]
//	— decide in Go —   [a snapshot DecideFrom refuses: load the whole history, decide again]
//	advance the head row; INSERT events + outbox (one statement); [upsert the snapshot]
//	[store the response under the idempotency key]
//	COMMIT
//	— after commit, coalesced, in its own short transaction —
//	SELECT pg_notify(outbox.NotifyChannel, '<shard>,<shard>,…')
//
// NOTIFY is deliberately not sent inside the append transaction:
// PostgreSQL takes a database-wide lock for a notifying commit and holds
// it through the WAL flush, which serializes every append (measured: ~2.7x
// fewer commands/s). A notifier goroutine sends the shards that received
// rows since its last round in one notification, at most one round per
// 25 ms (DefaultNotifyInterval); a relay that LISTENs wakes at once for
// the first commit after a quiet interval and within 25 ms for the rest
// (it lingers that long after a wake-up by default anyway), and still
// polls for the rare notification lost to a crash between commit and
// notify.
//
// The head row lock is always taken BEFORE the events and outbox rows are
// inserted. Appends to one aggregate are therefore serialized, and the
// outbox ids (an identity column) of one aggregate are allocated in version
// order: the relay relies on that to publish in order.
//
// # Group commit
//
// Batcher has the same Execute and runs the commands that arrive while
// transactions are in flight together in the next one (batcher.go: the
// queue; batch.go: the transaction; batchanswer.go: the answers). At most
// Committers transactions are in flight. A command that finds nothing in flight and nobody waiting
// runs at once, on its caller's goroutine, in the Store's own transaction
// above, so an idle api adds no latency and no hand-over; while
// transactions are in flight, commands queue, and a committer takes up to
// MaxBatch of them into one transaction as soon as a slot is free. A batch
// costs two round trips and the same handful of statements whatever its
// size, each over arrays of all its commands (planned once per
// connection: SET LOCAL plan_cache_mode keeps the generic plans):
//
//	BEGIN; SET LOCAL plan_cache_mode = force_generic_plan
//	[claim the batch's idempotency keys, sorted]            INSERT … SELECT unnest … ON CONFLICT DO NOTHING RETURNING
//	lock the head rows of its aggregates, sorted            SELECT … ORDER BY type, id FOR UPDATE
//	load the snapshots and the events after them            one SELECT of each over all of them
//	— decide in Go, command by command in arrival order —
//	[give back the keys of failed commands; read the keys of replays]
//	advance the head rows (fails unless each is where it was locked); INSERT the new ones
//	upsert the snapshots the commands left                  one statement
//	INSERT every event + outbox row (one statement, arrival order)
//	[store the answers under the keys]
//	COMMIT
//	— after commit: answer each command; the batch's shards to the notifier once —
//
// Every decision happens in Go between the two round trips, so a command
// that fails — version conflict, not found, a domain error or a schema
// failure from Decide, even a panic in Decide — never touches the
// transaction: it is answered alone with the error the Store would give,
// and only its claimed key is given back (deleted in the same
// transaction). Commands on one aggregate in one batch are applied in
// arrival order: each Decide sees the history including what the earlier
// ones decided, and the versions, global positions and outbox ids follow.
// Two commands with the same idempotency key (per principal) never share a
// batch: the later one goes to the next, whose claim finds the first one's
// key committed and answers its stored response (or waits for a batch
// still holding it), so exactly one appends. Head rows and keys are locked
// in sorted order, so concurrent batches cannot deadlock on them.
//
// Nothing is answered before COMMIT returns. If PostgreSQL refuses the
// transaction as a whole (an ERROR: a deadlock with another writer, a
// create racing another transaction's create of the same id), nothing
// committed, and each command runs again alone through Store.Execute,
// once. If the connection or the backend ends while the COMMIT is on its
// way, whether the batch committed is unknown: every command of it gets
// ErrCommitUnknown (503), each committed entirely or not at all, and a
// retry with the same idempotency key gets the stored answer if it did.
// A caller whose context ends while its command is queued gets the
// context's error and the command is dropped; once its batch is sent the
// batch runs under its own timeout, whatever happens to that caller.
//
// # Snapshots
//
// A command with DecideFrom folds its aggregate from the snapshot
// written with its StateVersion and the events after it (snapshot.go),
// and the state it returns is written as the new snapshot in the same
// transaction, so its cost does not depend on the length of the history.
// Snapshots are derived data: one of another state version is not read;
// one that does not fit the head version, or that DecideFrom refuses
// (ErrSnapshotInvalid), is ignored and the whole history read instead (in
// a batch, the batch rolls back and runs one by one). RebuildSnapshots
// rewrites them after a fold change.
package eventstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

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
	// (nil for a new aggregate). When Decide and DecideFrom are nil,
	// Events are appended.
	Decide func(history []Event) ([]NewEvent, error)
	// DecideFrom, when set, is called instead of Decide, and the store
	// keeps the aggregate's snapshot: it hands DecideFrom the snapshot
	// written with StateVersion (nil when there is none, or it was
	// written with another version) and only the events after it, and
	// writes the state DecideFrom returns as the new snapshot in the same
	// transaction. The cost of a command then does not grow with the
	// aggregate's history. Decide, if also set, must decide the same from
	// the whole history: it is what a repository without snapshots calls.
	DecideFrom func(from *Snapshot, events []Event) (Decision, error)
	// StateVersion (>= 1 with DecideFrom) is the version of the state
	// DecideFrom reads and writes.
	StateVersion int
	Events       []NewEvent
	Metadata     envelope.Metadata
	OccurredAt   time.Time
	Idempotency  *Idempotency
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

// New returns a Store on pool. It starts the post-commit notifier, with
// DefaultNotifyInterval between rounds; Close stops it.
func New(pool *pgxpool.Pool) *Store {
	return NewNotifyEvery(pool, DefaultNotifyInterval)
}

// NewNotifyEvery is New with every as the least time between two notify
// rounds, 0 (a round per commit, as they come) to MaxNotifyInterval; a
// value outside is taken as the nearest bound.
func NewNotifyEvery(pool *pgxpool.Pool, every time.Duration) *Store {
	return &Store{pool: pool, notifier: startNotifier(pool, outbox.NotifyChannel, every)}
}

// newStore lets tests use their own channel: NOTIFY is database-wide, and
// tests share one database.
func newStore(pool *pgxpool.Pool, channel string) *Store {
	return &Store{pool: pool, notifier: startNotifier(pool, channel, DefaultNotifyInterval)}
}

// Close stops the notifier after sending what is pending. It does not
// close the pool.
func (s *Store) Close() { s.notifier.close() }

// Ping checks that PostgreSQL answers.
func (s *Store) Ping(ctx context.Context) error { return s.pool.Ping(ctx) }

// Execute runs one command: claim the idempotency key (if any), lock the
// aggregate, load and fold its history (if Decide is set), decide, append
// events + outbox rows, store the idempotent response, notify, commit.
func (s *Store) Execute(ctx context.Context, cmd Command) (Result, error) {
	if err := checkCommand(cmd); err != nil {
		return Result{}, err
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

// IsUnavailable reports whether err means PostgreSQL could not be reached,
// timed out or is shutting down (HTTP 503), as opposed to a statement
// PostgreSQL rejected.
func IsUnavailable(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, ErrCommitUnknown) || errors.Is(err, ErrClosed) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) ||
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
