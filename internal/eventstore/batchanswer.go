package eventstore

import (
	"bytes"
	"fmt"
)

// answerAll answers every command of a batch with err.
func answerAll(batch []*pending, err error) {
	for _, p := range batch {
		p.answer(Result{}, err)
	}
}

// oneByOne runs commands through the Store's own transaction, one after
// the other in arrival order, off the committer.
func (b *Batcher) oneByOne(batch []*pending) {
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		for _, p := range batch {
			p.answer(b.s.Execute(p.ctx, p.cmd))
		}
	}()
}

// answerBatch answers every command of a committed batch.
func (b *Batcher) answerBatch(tx *batchTx) {
	var again []*pending
	for i := range tx.cmds {
		c := &tx.cmds[i]
		switch {
		case c.err != nil:
			c.p.answer(Result{}, c.err)
		case c.replay:
			idem := c.p.cmd.Idempotency
			s, ok := tx.stored[idemKey{idem.Principal, idem.Key}]
			switch {
			case !ok: // purged between the claim and the read: claim again
				again = append(again, c.p)
			case !bytes.Equal(s.hash, idem.RequestHash):
				c.p.answer(Result{}, ErrIdempotencyMismatch)
			default:
				c.p.answer(Result{Replayed: true, Status: s.status, Body: s.body}, nil)
			}
		default:
			c.p.answer(tx.result(c))
		}
	}
	if len(again) > 0 {
		b.oneByOne(again)
	}
}

func (tx *batchTx) result(c *batchCmd) (Result, error) {
	res := c.res
	for j, id := range c.ids {
		a, ok := tx.appended[id]
		if !ok {
			cmd := c.p.cmd
			return Result{}, fmt.Errorf("appending to %s %s: event %d of %d not returned", cmd.AggregateType, cmd.AggregateID, j+1, len(c.ids))
		}
		a.Type = c.events[j].Type
		res.Appended = append(res.Appended, a)
	}
	return res, nil
}
