package eventstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// ErrCommitUnknown: the connection broke while a batch's COMMIT was on its
// way, so whether its commands committed is unknown (each one entirely or
// not at all). Nothing was acknowledged; a retry with the same
// idempotency key gets the stored answer if it did commit. IsUnavailable
// reports it (HTTP 503).
var ErrCommitUnknown = errors.New("commit outcome unknown")

type aggKey struct{ typ, id string }

type idemKey struct{ principal, key string }

// aggState is one aggregate of a batch: its head as locked and as the
// batch's commands, in arrival order, advance it.
type aggState struct {
	exists  bool    // its head row was found (and locked)
	start   int64   // the version it was locked at
	current int64   // after the commands decided so far
	history []Event // as stored, then what earlier commands of the batch decided
}

// batchCmd is one command of a batch and what the batch made of it.
type batchCmd struct {
	p      *pending
	err    error // decided alone: conflict, not found, Decide's error
	replay bool  // its idempotency key was taken: answer the stored response
	events []NewEvent
	ids    []string // event ids, in order
	res    Result
}

// storedKey is a stored idempotency record read for a replay.
type storedKey struct {
	hash   []byte
	status int
	body   []byte
}

// batchTx is one batch's transaction on one connection. Every decision
// is made in Go between the two round trips, so no command's failure
// touches the transaction: a failed command only releases its key claim.
type batchTx struct {
	conn *pgx.Conn
	cmds []batchCmd
	aggs map[aggKey]*aggState
	keys []aggKey // distinct aggregates, in arrival order
	b    *pgx.Batch

	begun    bool
	claimed  map[idemKey]bool
	stored   map[idemKey]storedKey
	appended map[string]Appended // by event id
	shards   []int
	writes   batchWrites
}

// batchWrites are the arrays of the write statements.
type batchWrites struct {
	release           [2][]string // principal, key
	replay            [2][]string
	storeP, storeK    []string
	storeStatus       []int32
	storeBody         [][]byte
	evIDs, evT, evI   []string
	evV               []int64
	evType            []string
	evSV              []int32
	evPayload, evMeta []string
	evAt              []time.Time
	updT, updI        []string
	updV, updOld      []int64
	insT, insI        []string
	insV              []int64
}

func newBatchTx(conn *pgx.Conn, batch []*pending) *batchTx {
	tx := &batchTx{conn: conn, b: &pgx.Batch{}, aggs: map[aggKey]*aggState{}, claimed: map[idemKey]bool{},
		stored: map[idemKey]storedKey{}, appended: map[string]Appended{}}
	tx.cmds = make([]batchCmd, len(batch))
	for i, p := range batch {
		tx.cmds[i].p = p
		k := aggKey{p.cmd.AggregateType, p.cmd.AggregateID}
		if tx.aggs[k] == nil {
			tx.aggs[k] = &aggState{}
			tx.keys = append(tx.keys, k)
		}
	}
	return tx
}

// runBatch runs one batch and answers each of its commands.
func (b *Batcher) runBatch(batch []*pending) {
	ctx, cancel := context.WithTimeout(context.Background(), b.cfg.Timeout)
	defer cancel()
	conn, err := b.s.pool.Acquire(ctx)
	if err != nil {
		answerAll(batch, fmt.Errorf("acquiring connection: %w", err))
		return
	}
	defer conn.Release()
	tx := newBatchTx(conn.Conn(), batch)
	err = tx.run(ctx, b.beforeCommit)
	if err != nil && conn.Conn().PgConn().TxStatus() != 'I' {
		rctx, rcancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, _ = conn.Exec(rctx, "ROLLBACK")
		rcancel()
	}
	var pe *pgconn.PgError
	switch {
	case err == nil:
		b.s.notifier.addAll(tx.shards)
		b.answerBatch(tx)
	case errors.Is(err, ErrCommitUnknown):
		b.stats.unknown.Add(1)
		b.m.unknown.Inc()
		b.log.Warn("group commit: COMMIT cut off, outcome unknown", "commands", len(batch), "err", err)
		answerAll(batch, err)
	case errors.As(err, &pe) || errors.Is(err, errRolledBack):
		// PostgreSQL refused the transaction as a whole (a deadlock, a
		// create racing another transaction's create of the same id):
		// nothing committed. Each command runs again alone, once, and
		// gets its own answer.
		b.stats.fallbacks.Add(1)
		b.m.fallbacks.Inc()
		b.log.Warn("group commit: batch refused, running its commands one by one", "commands", len(batch), "err", err)
		b.oneByOne(batch)
	default:
		answerAll(batch, err) // nothing was committed: no COMMIT was sent
	}
}

var errRolledBack = errors.New("batch transaction rolled back")

// run sends the batch: claim keys, lock heads and load histories; decide
// in Go; write everything and commit.
func (tx *batchTx) run(ctx context.Context, beforeCommit func(context.Context, uint32) error) error {
	if tx.needsLock() {
		tx.queueLock()
		if err := tx.send(ctx, "locking"); err != nil {
			return err
		}
	}
	for i := range tx.cmds {
		tx.decide(&tx.cmds[i])
	}
	tx.queueWrites()
	if beforeCommit != nil {
		if err := tx.send(ctx, "appending"); err != nil {
			return err
		}
		if err := beforeCommit(ctx, tx.conn.PgConn().PID()); err != nil {
			return err
		}
	}
	return tx.commit(ctx)
}

func (tx *batchTx) send(ctx context.Context, doing string) error {
	err := tx.conn.SendBatch(ctx, tx.b).Close()
	tx.b = &pgx.Batch{}
	if err != nil {
		return fmt.Errorf("%s a batch of %d commands: %w", doing, len(tx.cmds), err)
	}
	return nil
}

// needsLock: a batch of creates without keys needs no first round trip;
// a create of an id that exists then fails the head row INSERT, and the
// batch runs again one by one.
func (tx *batchTx) needsLock() bool {
	for _, c := range tx.cmds {
		if c.p.cmd.Idempotency != nil || c.p.cmd.ExpectedVersion != NoAggregate {
			return true
		}
	}
	return false
}

// queueBegin starts the transaction. The batch statements take arrays
// whose length PostgreSQL only knows when it plans them with the values
// (a custom plan); it would plan each statement again on every batch,
// for plans that do not change: index lookups per array element. The
// generic plans are kept for the transaction only (SET LOCAL).
func (tx *batchTx) queueBegin() {
	tx.b.Queue("BEGIN")
	tx.b.Queue("SET LOCAL plan_cache_mode = force_generic_plan")
	tx.begun = true
}

// queueLock queues BEGIN, the key claims, the head row locks and the
// histories the commands fold.
func (tx *batchTx) queueLock() {
	tx.queueBegin()
	var kp, kk []string
	var kh [][]byte
	var lt, li, ht, hi []string
	hist := map[aggKey]bool{}
	for _, c := range tx.cmds {
		cmd := c.p.cmd
		if idem := cmd.Idempotency; idem != nil {
			kp, kk, kh = append(kp, idem.Principal), append(kk, idem.Key), append(kh, idem.RequestHash)
		}
		if cmd.Decide != nil && cmd.ExpectedVersion != NoAggregate {
			hist[aggKey{cmd.AggregateType, cmd.AggregateID}] = true
		}
	}
	for _, k := range tx.keys {
		lt, li = append(lt, k.typ), append(li, k.id)
		if hist[k] {
			ht, hi = append(ht, k.typ), append(hi, k.id)
		}
	}
	if len(kp) > 0 {
		tx.b.Queue(claimKeysSQL, kp, kk, kh).Query(func(rows pgx.Rows) error {
			for rows.Next() {
				var k idemKey
				if err := rows.Scan(&k.principal, &k.key); err != nil {
					return err
				}
				tx.claimed[k] = true
			}
			return rows.Err()
		})
	}
	tx.b.Queue(lockHeadsSQL, lt, li).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			var k aggKey
			var v int64
			if err := rows.Scan(&k.typ, &k.id, &v); err != nil {
				return err
			}
			if a := tx.aggs[k]; a != nil {
				a.exists, a.start, a.current = true, v, v
			}
		}
		return rows.Err()
	})
	if len(ht) > 0 {
		tx.b.Queue(loadHistoriesSQL, ht, hi).Query(func(rows pgx.Rows) error {
			for rows.Next() {
				var k aggKey
				var e Event
				var payload []byte
				if err := rows.Scan(&k.typ, &k.id, &e.Version, &e.Type, &e.SchemaVersion, &payload); err != nil {
					return err
				}
				e.Payload = payload
				if a := tx.aggs[k]; a != nil {
					a.history = append(a.history, e)
				}
			}
			return rows.Err()
		})
	}
}

// decide settles one command in arrival order: a replay, a failure
// answered alone, or events appended on top of what the batch's earlier
// commands on the same aggregate appended.
func (tx *batchTx) decide(c *batchCmd) {
	cmd := c.p.cmd
	w := &tx.writes
	idem := cmd.Idempotency
	if idem != nil && !tx.claimed[idemKey{idem.Principal, idem.Key}] {
		c.replay = true
		w.replay[0], w.replay[1] = append(w.replay[0], idem.Principal), append(w.replay[1], idem.Key)
		return
	}
	a := tx.aggs[aggKey{cmd.AggregateType, cmd.AggregateID}]
	err := versionError(cmd, a.current)
	if err == nil {
		c.events, err = tx.events(cmd, a)
	}
	var meta []byte
	if err == nil {
		meta, err = json.Marshal(cmd.Metadata)
	}
	for range c.events {
		if err != nil {
			break
		}
		var u uuid.UUID
		if u, err = uuid.NewV7(); err == nil {
			c.ids = append(c.ids, u.String())
		}
	}
	if err != nil {
		c.err = err
		if idem != nil { // claimed by this transaction: give it back
			w.release[0], w.release[1] = append(w.release[0], idem.Principal), append(w.release[1], idem.Key)
		}
		return
	}
	at := cmd.OccurredAt
	if at.IsZero() {
		at = time.Now()
	}
	base := a.current
	for j, e := range c.events {
		v := base + int64(j) + 1
		a.history = append(a.history, Event{Version: v, Type: e.Type, SchemaVersion: e.SchemaVersion, Payload: e.Payload})
		w.evIDs, w.evT, w.evI, w.evV = append(w.evIDs, c.ids[j]), append(w.evT, cmd.AggregateType), append(w.evI, cmd.AggregateID), append(w.evV, v)
		w.evType, w.evSV = append(w.evType, e.Type), append(w.evSV, int32(e.SchemaVersion))
		w.evPayload, w.evMeta, w.evAt = append(w.evPayload, string(e.Payload)), append(w.evMeta, string(meta)), append(w.evAt, at)
	}
	a.current += int64(len(c.events))
	c.res = Result{Version: a.current}
	if idem != nil {
		c.res.Status, c.res.Body = idem.Response(c.res)
		w.storeP, w.storeK = append(w.storeP, idem.Principal), append(w.storeK, idem.Key)
		w.storeStatus, w.storeBody = append(w.storeStatus, int32(c.res.Status)), append(w.storeBody, c.res.Body)
	}
}

// events returns what cmd appends: its Events, or what Decide makes of
// the aggregate's history so far (nil for a create, like Store.Execute).
// A panic in Decide fails that command only.
func (tx *batchTx) events(cmd Command, a *aggState) (evs []NewEvent, err error) {
	if cmd.Decide == nil {
		return cmd.Events, nil
	}
	var history []Event
	if cmd.ExpectedVersion != NoAggregate && len(a.history) > 0 {
		history = a.history[:len(a.history):len(a.history)] // later appends must not show through
	}
	defer func() {
		if r := recover(); r != nil {
			evs, err = nil, fmt.Errorf("deciding on %s %s: panic: %v", cmd.AggregateType, cmd.AggregateID, r)
		}
	}()
	return cmd.Decide(history)
}

// queueWrites queues what the decisions need: key releases and replay
// reads, the head rows' advance, every event with its outbox row in one
// statement, the stored answers.
func (tx *batchTx) queueWrites() {
	w := &tx.writes
	if !tx.begun {
		tx.queueBegin()
	}
	if len(w.release[0]) > 0 {
		tx.b.Queue(releaseKeysSQL, w.release[0], w.release[1])
	}
	if len(w.replay[0]) > 0 {
		tx.b.Queue(readKeysSQL, w.replay[0], w.replay[1]).Query(func(rows pgx.Rows) error {
			for rows.Next() {
				var k idemKey
				var s storedKey
				if err := rows.Scan(&k.principal, &k.key, &s.hash, &s.status, &s.body); err != nil {
					return err
				}
				tx.stored[k] = s
			}
			return rows.Err()
		})
	}
	for _, k := range tx.keys {
		a := tx.aggs[k]
		switch {
		case a.current == a.start:
		case a.exists:
			w.updT, w.updI, w.updV, w.updOld = append(w.updT, k.typ), append(w.updI, k.id), append(w.updV, a.current), append(w.updOld, a.start)
		default:
			w.insT, w.insI, w.insV = append(w.insT, k.typ), append(w.insI, k.id), append(w.insV, a.current)
		}
	}
	if len(w.updT) > 0 {
		tx.b.Queue(updateHeadsSQL, w.updT, w.updI, w.updV, w.updOld)
	}
	if len(w.insT) > 0 {
		tx.b.Queue(insertHeadsSQL, w.insT, w.insI, w.insV)
	}
	if len(w.evIDs) > 0 {
		tx.b.Queue(appendBatchSQL, w.evIDs, w.evT, w.evI, w.evV, w.evType, w.evSV, w.evPayload, w.evMeta, w.evAt).
			Query(tx.scanAppended)
	}
	if len(w.storeP) > 0 {
		tx.b.Queue(storeKeysSQL, w.storeP, w.storeK, w.storeStatus, w.storeBody)
	}
}

func (tx *batchTx) scanAppended(rows pgx.Rows) error {
	seen := map[int]bool{}
	for rows.Next() {
		var a Appended
		var shard int
		if err := rows.Scan(&a.EventID, &a.Version, &a.GlobalPosition, &a.RecordedAt, &shard); err != nil {
			return err
		}
		tx.appended[a.EventID] = a
		if !seen[shard] {
			seen[shard] = true
			tx.shards = append(tx.shards, shard)
		}
	}
	return rows.Err()
}

// commit sends COMMIT (with the writes unless beforeCommit sent them). A
// statement PostgreSQL refused (severity ERROR) means nothing committed;
// a connection or backend that ended on the way leaves the outcome
// unknown.
func (tx *batchTx) commit(ctx context.Context) error {
	var committed bool
	tx.b.Queue("COMMIT").Exec(func(ct pgconn.CommandTag) error {
		committed = ct.String() == "COMMIT"
		return nil
	})
	err := tx.send(ctx, "committing")
	var pe *pgconn.PgError
	switch {
	case err == nil && !committed:
		return errRolledBack
	case err == nil:
		return nil
	case errors.As(err, &pe) && pe.Severity == "ERROR":
		// A statement failed: the transaction is aborted and the
		// COMMIT behind it was skipped.
		return err
	}
	// The connection broke, or the backend ended (FATAL, e.g. terminated
	// or shut down): PostgreSQL may have committed before it went.
	return fmt.Errorf("%w: %w", ErrCommitUnknown, err)
}
