// Package relay publishes the transactional outbox to Kafka.
//
// # Claiming: shards and leases
//
// Every outbox row carries a shard derived from its aggregate id (package
// outbox), so the rows of one aggregate share a shard. A relay publishes a
// shard only while it holds that shard's row in relay_leases (owner, epoch,
// expires_at). Leases are renewed every LeaseTTL/3; a free or expired lease
// is taken with epoch+1. Live relays heartbeat into relay_members, and each
// relay holds at most ceil(outbox.ShardCount / live) shards: an over-quota
// relay hands the excess back between two batches, and an under-quota relay
// takes free shards, so N relays end up with ShardCount/N shards each.
//
// Leases rather than advisory locks: a lease is a row anyone can read
// (who owns what, since when, in which epoch), it survives a connection
// blip without losing ownership, its epoch fences a previous owner in the
// conditional delete, and an operator can move a shard with one UPDATE. An
// advisory lock is tied to one session: invisible to the relay's other pool
// connections, lost silently with that connection, and without an epoch.
//
// # Never skipping a row
//
// Each batch reads the lowest-id rows of the owned shards above the
// worker's low-water mark, an id at or below which no row of its shards is
// pending or can still commit (lowWater explains why; the mark starts at 0
// and moves only over claims whose concurrent transactions have all ended;
// it is dropped when PostgreSQL restarts, recovers from a crash or fails
// over). A row is deleted only after Kafka acknowledged it. A transaction
// that commits a lower id after a higher one was published is still above
// the mark and found by the next claim. The API appends under the
// aggregate's head row lock, so one aggregate's rows become visible in
// version order. Rows are DELETEd by id after the ack (not marked): the
// outbox stays as small as the backlog, the mark keeps claims off the
// index entries of deleted rows, and the events table remains the durable
// history. Every RescanInterval a worker claims once from 0, so a row
// inserted outside that protocol below the mark is published late rather
// than never.
//
// # Order and fencing
//
// Within a batch every record of one key goes to the same partition through
// one idempotent producer, in id order; the next batch starts only after the
// previous one was acked and deleted. The delete runs in a transaction that
// locks the shard's lease row FOR SHARE and checks owner and epoch, so a
// relay whose lease was taken over deletes nothing of that shard, and the
// new owner republishes those rows. Before each claim the leases are
// re-checked and lost shards are dropped at once. A relay that lost a
// lease can still have one batch of that shard in flight (Kafka cannot be
// fenced by a Postgres lease): the consumer may then see a duplicate, or an
// older version replayed after a newer one, but never a missing event, and
// the first occurrences of each key's versions stay in order. The projector
// is idempotent (version-checked) and reports gaps.
//
// Partial failures: a batch's rows are deleted only up to the first failed
// row of each aggregate; later rows of that aggregate stay and are
// republished, in order, with the failed one. When Kafka is unreachable
// (timeouts, retriable errors) franz-go fails every later buffered record
// of the partition too, so nothing newer overtakes the failed record. A
// non-retriable rejection of one produce batch (INVALID_RECORD,
// MESSAGE_TOO_LARGE: a poison record) fails only that batch, so newer
// versions of the key can land before the failed one is republished; the
// projector sees that as a version gap and parks it, then gets the full
// run again from the failed version. Such a record keeps failing and is
// reported by cqrsflow_relay_publish_errors_total.
package relay
