// Package projector is the consumer runtime that keeps the Elasticsearch
// read models in sync with the event topics.
//
// One Runner consumes one projection's topic in its own consumer group
// (cooperative-sticky, manual commits). The path of one record, file by
// file:
//
//   - consumer.go: Runner.Run polls a batch (up to BatchMaxRecords,
//     waiting FlushInterval for more once some arrived) and hands it to the
//     processor. Rebalances are blocked while a batch is in flight.
//   - processor.go: processor.handle decodes the envelopes strictly
//     (envelope.Decode); a record that cannot be routed to one of the
//     projection's aggregates goes to the DLQ at once. The events are
//     grouped by aggregate; apply holds back those of quarantined
//     aggregates (quarantine.go), reads the current documents (from the
//     cache, cache.go, else Store.MGet, store_es.go: _mget, whose _version
//     is the aggregate version), folds each aggregate's events onto its
//     document (fold.go), gives up version gaps that are too old or too
//     many (hold.go), writes the changed documents with one Store.Bulk
//     (eswrite.go: _bulk with the aggregate version as external version),
//     then sends the dead letters (dlq_kafka.go: `<topic>.dlq` with
//     x-dlq-* headers) and the newly quarantined aggregates (hold.go).
//     Transient failures of the store or of Kafka are retried with capped
//     backoff (internal/backoff) until they succeed or shutdown; apply is
//     safe to repeat because every write is versioned or idempotent.
//   - partitions.go: finish settles the batch: handled offsets move past
//     its records, events behind a young version gap stay parked.
//   - consumer.go: Runner.commit commits what partitions.go says is
//     committable, after Elasticsearch (and, for poison, Kafka)
//     acknowledged; revoked partitions are committed in onRevoked.
//   - lag.go: every LagInterval, consumer lag (end offset − committed) and
//     sync lag (how old the oldest unfinished record is).
//
// replay.go (offset resets), readmodel.go (creating the first index,
// rebuilding into a new one and swapping the alias) and dlq_admin.go,
// dlq_redrive.go (`projector dlq list|show|redrive|skip`) are the admin
// commands; config.go holds the defaults, metrics.go the metrics.
//
// The processor depends only on the Store and DLQ interfaces declared next
// to it and uses Kafka records as data; everything that talks to the Kafka
// client is in consumer.go, dlq_kafka.go and lag.go. Store speaks
// esindex's Hit, Op and Result: they are plain data, and types of its own
// would only add a conversion per document in the adapter. It is one package,
// not several, because the processor and the consumer share the
// per-partition state (partitions.go) and a package boundary there would
// only export it. The fold is a pure function of a projection, a document
// and events, so anything holding an aggregate's events can reproduce what
// the projector writes.
//
// Bad data never stalls the projection. Errors are classified
// (classify.go): a failure of Elasticsearch or Kafka as such (unreachable,
// 429, 5xx, timeouts) is transient and retried as above; a failure of one
// record is permanent and dead-lettered at once with a reason code
// (x-dlq-reason-code, the reason label of
// cqrsflow_projector_dead_letters_total) and the free-text reason:
// invalid_envelope (not valid JSON, a required field missing or wrong),
// id_too_long (aggregate id over 512 bytes: Elasticsearch refuses it as a
// document id, so it can never be indexed), wrong_aggregate_type,
// unprojectable (the projection refuses the event: unknown event type,
// bad payload), es_rejected (Elasticsearch refuses the document for good:
// an item 4xx other than 409 and 429, or a refused request, narrowed down
// by halving the request), document_too_large (over esindex.MaxDocBytes,
// or 413). A 409 is not an error: the document holds a newer version
// (stale).
//
// Quarantine: the aggregate stops, not the partition. A permanent failure
// of an aggregate's next version N (or a record that does not decode but
// whose aggregate and version envelope.Identify can read, and whose key
// agrees) blocks that aggregate at N: its events after N are never
// applied over the hole (order per aggregate is kept). Instead of waiting
// in memory they are held: dead-lettered at once with reason
// quarantined_after and x-dlq-blocked-version/-topic/-partition/-offset
// naming the blocking event, so the partition's committed offset moves
// on and other aggregates flow. The blocked aggregate is recorded in the
// compacted topic `<topic>.quarantine` (key "<projection>:<aggregate
// id>", value QuarantineEntry), after its dead letters and before the
// batch's offsets are committed, so a crash in between re-reads the
// records and does both again (a dead letter may be written twice;
// redrive treats copies as one). Every worker reads that topic from the
// start and follows it (kafkaQuarantine), and reads it to its end after
// each partition assignment before handling the partitions' records, so a
// restarted worker or the new owner after a rebalance holds the same
// aggregates. An event of version N or below still goes through the fold
// (a redelivered blocking event is dead-lettered again; a missing version
// that arrives late is applied). An aggregate id over 512 bytes is not
// quarantined: none of its events can ever be indexed, each is
// dead-lettered on its own. A poison first event blocks at version 1
// (there is no document).
//
// Release is an operator's act (`projector dlq`, dlq_redrive.go): redrive
// runs the pending dead letters of the selected aggregates through the
// processor (mget, fold in version order, versioned bulk), so after a fix
// they apply, duplicates are no-ops, and what still fails stays in the
// DLQ with the aggregate blocked at its first failing version; an
// aggregate with nothing pending left is released (a record marked
// released, then a tombstone). skip writes the document at the skipped
// version with its content unchanged (external version: it never
// overwrites a newer one) and releases and redrives the rest. A worker
// that held an event just before it read a release writes it to the DLQ
// after the redrive read the DLQ: redrive looks at released aggregates
// again after a short settle, and anything still missed meets a version
// gap in the worker and is quarantined again after ParkTimeout — visible,
// never lost.
//
// Version gaps (parking). An event whose version is more than one above the
// document's is parked: kept in memory with its record, together with the
// later events of the same aggregate, counted (outcome "parked",
// cqrsflow_projector_version_gaps_total) and logged; the parked count is the
// gauge cqrsflow_projector_parked_events. Other aggregates keep flowing and
// are applied normally. When the missing event arrives (a relay retry
// re-publishes it later in the same partition) the parked events are
// applied in order and the key is unparked. Parked aggregates are also
// re-read from Elasticsearch with every batch (and every ParkedRecheck
// without new records), so a gap closed by another writer (a rebuild
// writing through the alias) resolves too.
//
// Parked records are never lost: the committed offset of a partition never
// moves past its oldest parked record, so a restart, a crash or a new owner
// after a rebalance re-reads the partition from there (events already
// applied come back as duplicate/stale no-ops, the gap is detected again).
// That pin is bounded: a gap older than ParkTimeout, or the gaps parked
// longest while MaxParked or more events are parked, are given up — the
// aggregate is quarantined at the missing version (reason version_gap) and
// its parked events are held in the DLQ, so the commit moves on and
// fetching never stops. If the missing version shows up later it is
// applied; the held events wait for a redrive (or `dlq skip` of a version
// that is lost for good).
package projector
