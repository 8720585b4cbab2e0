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
//   - processor.go: processor.handle decodes the envelopes; a record that
//     does not decode, or carries another aggregate type, is poison and goes
//     to the DLQ (dlq_kafka.go: `<topic>.dlq` with x-dlq-* headers). The
//     other events are grouped by aggregate; apply reads the current
//     documents (from the cache, cache.go, else Store.MGet, store_es.go:
//     _mget, whose _version is the aggregate version), folds each
//     aggregate's events onto its document (fold.go), writes the changed
//     documents with one Store.Bulk (_bulk with the aggregate version as
//     external version) and dead-letters events the projection rejects.
//     Failures of the store or the DLQ are retried with capped backoff
//     (internal/backoff) until they succeed or shutdown; apply is safe to
//     repeat because every write is versioned.
//   - partitions.go: finish settles the batch: handled offsets move past
//     its records, events behind a version gap stay parked.
//   - consumer.go: Runner.commit commits what partitions.go says is
//     committable, after Elasticsearch (and, for poison, Kafka)
//     acknowledged; revoked partitions are committed in onRevoked.
//   - lag.go: every LagInterval, consumer lag (end offset − committed) and
//     sync lag (how old the oldest unfinished record is).
//
// replay.go (offset resets) and readmodel.go (creating the first index,
// rebuilding into a new one and swapping the alias) are the admin
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
// Version gaps (parking). An event whose version is more than one above the
// document's is parked: kept in memory with its record, together with the
// later events of the same aggregate, counted (outcome "parked",
// cqrsflow_projector_version_gaps_total) and logged; the parked count is the
// gauge cqrsflow_projector_parked_events. Other aggregates keep flowing and
// are applied normally. When the missing event arrives (a relay retry
// re-publishes it later in the same partition) the parked events are
// applied in order and the key is unparked. Parked aggregates are also
// re-read from Elasticsearch with every batch, so a gap closed by another
// writer (a rebuild writing through the alias) resolves too. At MaxParked
// parked events the worker pauses fetching and only re-checks the parked
// aggregates, so memory stays bounded.
//
// Parked records are never lost: the committed offset of a partition never
// moves past its oldest parked record, so a restart, a crash or a new owner
// after a rebalance re-reads the partition from there (events already
// applied come back as duplicate/stale no-ops, the gap is detected again).
// The price is that the partition's committed offset — and so its consumer
// lag and sync lag — stays behind while a gap is open, which is exactly the
// signal an operator needs. An operator resolves a gap that will never
// close (the missing event is gone) by fixing the event stream or by moving
// the group past it with `projector replay --offsets topic:partition=offset`.
package projector
