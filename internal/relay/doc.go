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
// the loop's idempotent producer, in id order; the next batch starts only
// after the previous one was acked and deleted. The delete runs in a
// transaction that locks the shard's lease row FOR SHARE and checks owner
// and epoch, so a relay whose lease was taken over deletes nothing of that
// shard, and the new owner republishes those rows. Before each claim the
// leases are re-checked and lost shards are dropped at once. A relay that
// lost a lease can still have one batch of that shard in flight (Kafka
// cannot be fenced by a Postgres lease): the consumer may then see a
// duplicate, or an older version replayed after a newer one, but never a
// missing event, and the first occurrences of each key's versions stay in
// order. The projector is idempotent (version-checked) and reports gaps.
//
// Partial failures: a batch's rows are deleted only up to the first failed
// row of each aggregate; later rows of that aggregate stay and are
// republished, in order, with the failed one. Each loop has a producer of
// its own with manual flushing (ProducerOpts): the whole batch is buffered
// before anything is sent, so when Kafka refuses a produce request franz-go
// fails every later record of that partition with it (their idempotent
// sequence numbers follow the refused batch's), and nothing newer of the key
// is written ahead of the failed record. (Sent as produced, a record handed
// over after the refusal was handled went out in a fresh request and was
// written: version 2 on Kafka before version 1. A shared producer would
// reopen that window, since one loop's Flush sends another's half-produced
// batch.) A record too large for the client's batch limit, which franz-go
// fails alone, is not handed over (oversized) and stops its aggregate like a
// refusal.
//
// # Poison rows and dead letters
//
// A publish error is transient (Kafka unreachable or slow, a leader
// moving, an error about the producer itself) or permanent: Kafka's
// verdict on the record (MESSAGE_TOO_LARGE, INVALID_RECORD, …) or on its
// topic (TOPIC_AUTHORIZATION_FAILED, UNKNOWN_TOPIC_OR_PARTITION after
// franz-go's metadata retries, …), or an envelope that cannot be built
// (classify). Transient failures are retried without limit and never
// counted: the rows wait, the worker backs off.
//
// Kafka refuses a whole produce batch for one bad record, and franz-go
// then fails every record buffered for the partition, so a permanent
// error says little about the row that got it. The first failed row of
// each aggregate with a permanent error is sent again alone, through a
// producer of its own and one row at a time (confirm): acked, it is
// published; refused again, the refusal is its own (a topic-scope
// refusal, the same for every row of the topic, is confirmed once per
// topic and batch). A row with a confirmed refusal is a suspect of its
// worker: its aggregate's later rows are neither claimed nor sent, it is
// sent alone again once PoisonInterval has passed, and after
// PoisonAttempts consecutive confirmed refusals it moves to
// outbox_dead_letters, in the statement that deletes the batch's acked
// rows, under the same lease fencing: a relay that lost the shard moves
// nothing, and the row is in exactly one of the two tables. A transient
// failure of a suspect's attempt starts its count over; so does a restart
// (the counts are in memory, at most one batch of suspects per worker).
// Other aggregates are not held: the suspect's neighbours are sent alone
// in the batch that met it (up to maxProbes; the rest, and their later
// rows, go with the next batch, at once), and the suspect is never sent
// with a batch again.
//
// A dead letter holds its aggregate: claims skip the aggregate's rows with
// a higher id (an anti-join on outbox_dead_letters, skipped while the
// worker's shards have none), so per-aggregate order holds while every
// other aggregate flows. `outbox-relay dead retry` puts the row back
// under its own id, below the held rows, and `dead discard` drops it; both
// remove the dead letter, which bumps the redrive generation, and the
// workers' low-water marks, which may have passed the held rows, start
// over (lowWater).
package relay
