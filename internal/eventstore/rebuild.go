package eventstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// SnapshotFold folds an aggregate's whole history into the state a
// command's DecideFrom would leave (the snapshot's State).
type SnapshotFold func(history []Event) (json.RawMessage, error)

const listAggregatesSQL = `SELECT aggregate_id FROM aggregates
WHERE aggregate_type = $1 AND aggregate_id > $2 ORDER BY aggregate_id LIMIT $3`

// rebuildPage is how many aggregate ids RebuildSnapshots reads at a time.
const rebuildPage = 500

// RebuildSnapshots rewrites the snapshot of every aggregate of
// aggregateType from its whole history, folded by fold, at stateVersion.
// It is what follows a change of the fold or of the state's encoding (a
// new StateVersion): commands would otherwise ignore the old snapshots
// and fold each aggregate's whole history until their next append.
//
// Each aggregate is rebuilt in its own short transaction under its head
// row lock, so commands keep running meanwhile and a snapshot always
// matches the events it was folded from. It returns how many snapshots
// were written; after an error, those written so far stay (rebuilding
// again is harmless).
func (s *Store) RebuildSnapshots(ctx context.Context, aggregateType string, stateVersion int, fold SnapshotFold) (int, error) {
	if aggregateType == "" || stateVersion < 1 || fold == nil {
		return 0, errors.New("eventstore: RebuildSnapshots needs an aggregate type, a state version >= 1 and a fold")
	}
	n, after := 0, ""
	for {
		ids, err := s.listAggregates(ctx, aggregateType, after)
		if err != nil {
			return n, err
		}
		for _, id := range ids {
			if err := s.rebuildSnapshot(ctx, aggregateType, id, stateVersion, fold); err != nil {
				return n, err
			}
			n++
		}
		if len(ids) < rebuildPage {
			return n, nil
		}
		after = ids[len(ids)-1]
	}
}

func (s *Store) listAggregates(ctx context.Context, aggregateType, after string) ([]string, error) {
	rows, err := s.pool.Query(ctx, listAggregatesSQL, aggregateType, after, rebuildPage)
	if err != nil {
		return nil, fmt.Errorf("listing %s aggregates: %w", aggregateType, err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("listing %s aggregates: %w", aggregateType, err)
	}
	return ids, nil
}

func (s *Store) rebuildSnapshot(ctx context.Context, typ, id string, stateVersion int, fold SnapshotFold) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var head int64
		if err := tx.QueryRow(ctx, lockHeadSQL, typ, id).Scan(&head); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, loadSQL, typ, id)
		if err != nil {
			return err
		}
		history, err := scanEvents(rows)
		rows.Close()
		if err != nil {
			return err
		}
		if int64(len(history)) != head {
			return fmt.Errorf("%d events for head version %d", len(history), head)
		}
		state, err := fold(history)
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, upsertSnapshotSQL, typ, id, head, stateVersion, string(state))
		return err
	})
	if err != nil {
		return fmt.Errorf("rebuilding the snapshot of %s %s: %w", typ, id, err)
	}
	return nil
}
