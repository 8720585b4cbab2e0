package projector

import (
	"errors"
	"fmt"
	"slices"

	"github.com/twmb/franz-go/pkg/kgo"

	"cqrsflow/internal/envelope"
)

// Reason codes: why a record is in the DLQ. They are the x-dlq-reason-code
// header and the reason label of cqrsflow_projector_dead_letters_total, so
// the set is fixed and small; the free text is x-dlq-reason.
const (
	// ReasonInvalidEnvelope: not valid JSON, or an envelope missing or
	// breaking a required field.
	ReasonInvalidEnvelope = "invalid_envelope"
	// ReasonIDTooLong: aggregate id over 512 bytes, which Elasticsearch
	// refuses as a document id: it can never be projected.
	ReasonIDTooLong = "id_too_long"
	// ReasonWrongAggregate: an envelope of another aggregate type on this
	// projection's topic.
	ReasonWrongAggregate = "wrong_aggregate_type"
	// ReasonUnprojectable: the projection refuses the event (unknown event
	// type, payload that does not decode, event that cannot start or
	// continue the document).
	ReasonUnprojectable = "unprojectable"
	// ReasonRejected: Elasticsearch refused the document for good (a 4xx
	// other than 409/429: mapping rejection, term too long, …).
	ReasonRejected = "es_rejected"
	// ReasonTooLarge: the document after the event is over
	// esindex.MaxDocBytes, or Elasticsearch answered 413.
	ReasonTooLarge = "document_too_large"
	// ReasonVersionGap: held because a version of its aggregate never
	// arrived within PARK_TIMEOUT (or MAX_PARKED_EVENTS was reached).
	ReasonVersionGap = "version_gap"
	// ReasonQuarantinedAfter: held because an earlier version of its
	// aggregate is dead-lettered (the x-dlq-blocked-* headers name it).
	ReasonQuarantinedAfter = "quarantined_after"
)

// Reasons lists every reason code.
var Reasons = []string{ReasonInvalidEnvelope, ReasonIDTooLong, ReasonWrongAggregate, ReasonUnprojectable,
	ReasonRejected, ReasonTooLarge, ReasonVersionGap, ReasonQuarantinedAfter}

// ValidReason reports whether code is one of Reasons.
func ValidReason(code string) bool { return slices.Contains(Reasons, code) }

// held reports whether code marks an event held behind another one rather
// than an event that failed itself.
func held(code string) bool { return code == ReasonVersionGap || code == ReasonQuarantinedAfter }

// DeadLetter is one record on its way to the DLQ.
type DeadLetter struct {
	Rec    *kgo.Record
	Code   string // one of Reasons
	Reason string // free text, bounded when sent
	// AggregateID and Version are set when known (empty/0 otherwise), so
	// the DLQ can be read per aggregate without decoding the value.
	AggregateID string
	Version     int64
	// Blocked names what a held event waits behind (nil otherwise).
	Blocked *Blocker
	// DLQPartition and DLQOffset are where the dead letter landed, set by
	// DLQ.Send.
	DLQPartition int32
	DLQOffset    int64
}

// Blocker is the event an aggregate's later events are held behind: its
// version and the coordinates of its record in the event topic (Offset -1
// when the version never arrived).
type Blocker struct {
	Version   int64
	Topic     string
	Partition int32
	Offset    int64
}

// classifyDecode turns a Decode failure (or a foreign aggregate type)
// into a reason code.
func classifyDecode(err error) string {
	switch {
	case errors.Is(err, envelope.ErrIDTooLong):
		return ReasonIDTooLong
	case errors.Is(err, errWrongAggregate):
		return ReasonWrongAggregate
	}
	return ReasonInvalidEnvelope
}

var errWrongAggregate = errors.New("envelope of another aggregate type")

func wrongAggregate(got, want string) error {
	return fmt.Errorf("%w: aggregate_type %q on the topic of %q", errWrongAggregate, got, want)
}
