package relay

import (
	"errors"

	"github.com/twmb/franz-go/pkg/kerr"
)

// scope says what a failed publish says about its row.
type scope int8

const (
	// transient: Kafka unreachable, slow, moving leaders, or refusing
	// every record the same way (the producer's own configuration or
	// authorization): the row is retried until it goes through, and
	// nothing is counted against it.
	transient scope = iota
	// ofRecord: Kafka refused this record for what it is (size, format) or
	// the envelope cannot be built. Kafka refuses a whole produce batch
	// for one such record (and franz-go then fails every record buffered
	// for the partition), so the verdict holds only once the row, sent
	// alone, is refused again (confirm).
	ofRecord
	// ofTopic: the row's topic is missing, invalid or not authorized. Every
	// row of the topic fails alike, so one row sent alone confirms it for
	// all of them.
	ofTopic
)

// failure is a classified publish error: its scope and the reason label
// it is dead-lettered with.
type failure struct {
	scope  scope
	reason string
}

// Reason labels of cqrsflow_relay_dead_lettered_total and
// outbox_dead_letters.reason beside the Kafka error names of
// recordCodes and topicCodes: a fixed set, so the metric's cardinality is
// bounded.
const (
	reasonEnvelope = "envelope" // the row's envelope cannot be built (stored payload or metadata unusable)
	reasonOther    = "other"    // another non-retriable Kafka error about the record
)

// recordCodes are Kafka's verdicts on a record's content: a retry cannot
// change them, the record must change (or the topic's limits).
var recordCodes = []*kerr.Error{
	kerr.MessageTooLarge, kerr.RecordListTooLarge, kerr.InvalidRecord, kerr.CorruptMessage,
	kerr.InvalidTimestamp, kerr.UnsupportedForMessageFormat, kerr.PolicyViolation,
}

// topicCodes are Kafka's verdicts on a record's topic. franz-go reports
// UNKNOWN_TOPIC_OR_PARTITION (which Kafka calls retriable) only after
// several metadata requests found no such topic.
var topicCodes = []*kerr.Error{kerr.TopicAuthorizationFailed, kerr.UnknownTopicOrPartition, kerr.InvalidTopicException}

// clientCodes are non-retriable errors about the producer itself rather
// than a record: every row would fail alike, so dead-lettering would
// quarantine the whole outbox for a configuration or broker problem.
// They block, like an outage, and are fixed on the producer's side.
var clientCodes = []*kerr.Error{
	kerr.ClusterAuthorizationFailed, kerr.TransactionalIDAuthorizationFailed, kerr.InvalidRequiredAcks,
	kerr.UnsupportedVersion, kerr.SaslAuthenticationFailed, kerr.IllegalSaslState, kerr.UnsupportedSaslMechanism,
	kerr.InvalidProducerEpoch, kerr.OutOfOrderSequenceNumber, kerr.UnknownProducerID, kerr.InvalidProducerIDMapping,
	kerr.ProducerFenced, kerr.DuplicateSequenceNumber, kerr.InvalidTxnState,
}

// errEnvelope marks a row whose envelope could not be built.
var errEnvelope = errors.New("building the envelope")

// errHeld marks a row that was not sent because an earlier row of its
// aggregate failed (or is being confirmed): it waits for that row.
var errHeld = errors.New("held behind an earlier row of its aggregate")

// reasons is every reason label, for the metric's pre-declared series.
func reasons() []string {
	out := []string{reasonEnvelope, reasonOther}
	for _, c := range append(append([]*kerr.Error{}, recordCodes...), topicCodes...) {
		out = append(out, c.Message)
	}
	return out
}

// classify maps a publish error to its failure. Errors that are not
// Kafka's verdicts (timeouts, connection errors, a cancelled context)
// are transient.
func classify(err error) failure {
	if errors.Is(err, errEnvelope) {
		return failure{ofRecord, reasonEnvelope}
	}
	ke, ok := errors.AsType[*kerr.Error](err)
	if !ok {
		return failure{scope: transient}
	}
	for _, c := range recordCodes {
		if ke.Code == c.Code {
			return failure{ofRecord, c.Message}
		}
	}
	for _, c := range topicCodes {
		if ke.Code == c.Code {
			return failure{ofTopic, c.Message}
		}
	}
	for _, c := range clientCodes {
		if ke.Code == c.Code {
			return failure{scope: transient}
		}
	}
	if ke.Retriable {
		return failure{scope: transient}
	}
	return failure{ofRecord, reasonOther}
}
