package projector

import (
	"github.com/prometheus/client_golang/prometheus"

	"cqrsflow/internal/obs"
)

// Outcomes of an event, the outcome label of cqrsflow_projector_events_total.
const (
	OutcomeApplied   = "applied"
	OutcomeDuplicate = "duplicate"
	OutcomeStale     = "stale"
	OutcomeParked    = "parked"
	OutcomeDLQ       = "dlq"
)

// Metrics are the projector metrics of docs/architecture.md. One Metrics serves
// every projection of a process (the projection is a label).
type Metrics struct {
	ConsumerLag *prometheus.GaugeVec     // {projection,topic,partition}
	SyncLag     *prometheus.GaugeVec     // {projection}
	EndToEnd    *prometheus.HistogramVec // {projection}
	Events      *prometheus.CounterVec   // {projection,outcome}
	VersionGaps prometheus.Counter
	Parked      *prometheus.GaugeVec // {projection}: events currently parked
	// Quarantined is the number of quarantined aggregates of the
	// projection as this worker knows them (every worker follows the
	// whole quarantine topic, so every worker reports the same number).
	Quarantined   *prometheus.GaugeVec   // {projection}
	HeldEvents    *prometheus.CounterVec // {projection}: events held behind a blocked version
	DeadLetters   *prometheus.CounterVec // {projection,reason}: reason is one of Reasons
	SkippedEvents *prometheus.CounterVec // {projection}: events an operator dropped with `dlq skip`
	// Verified counts the continuous verification's aggregates by result
	// (one of Results); Drift is the number of aggregates this worker
	// found drifted within the verification window and has not since
	// found equal.
	Verified *prometheus.CounterVec // {projection,result}
	Drift    *prometheus.GaugeVec   // {projection}
}

// NewMetrics builds and registers the projector metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		ConsumerLag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: obs.Namespace, Subsystem: "projector", Name: "consumer_lag_records",
			Help: "Records between the partition's high watermark and the projection group's committed offset.",
		}, []string{"projection", "topic", "partition"}),
		SyncLag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: obs.Namespace, Subsystem: "projector", Name: "sync_lag_seconds",
			Help: "How far the read model is behind the event store in time; 0 when caught up, grows while records wait.",
		}, []string{"projection"}),
		EndToEnd: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: obs.Namespace, Subsystem: "projector", Name: "end_to_end_seconds",
			Help:    "Time from the event's commit in the event store (recorded_at) to Elasticsearch acknowledging its document.",
			Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 1.5, 2, 3, 5, 10, 30, 60, 300},
		}, []string{"projection"}),
		Events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: obs.Namespace, Subsystem: "projector", Name: "events_total",
			Help: "Events handled by outcome: applied, duplicate, stale, parked, dlq.",
		}, []string{"projection", "outcome"}),
		VersionGaps: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: obs.Namespace, Subsystem: "projector", Name: "version_gaps_total",
			Help: "Events that arrived with a version more than one above the document's (parked until the gap closes).",
		}),
		Parked: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: obs.Namespace, Subsystem: "projector", Name: "parked_events",
			Help: "Events currently parked behind a version gap.",
		}, []string{"projection"}),
		Quarantined: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: obs.Namespace, Subsystem: "projector", Name: "quarantined_aggregates",
			Help: "Aggregates whose events stop at a dead-lettered (or missing) version; their later events are held in the DLQ until redriven or skipped.",
		}, []string{"projection"}),
		HeldEvents: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: obs.Namespace, Subsystem: "projector", Name: "held_events_total",
			Help: "Events written to the DLQ because an earlier version of their aggregate is blocked (reasons quarantined_after and version_gap).",
		}, []string{"projection"}),
		DeadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: obs.Namespace, Subsystem: "projector", Name: "dead_letters_total",
			Help: "Records written to the DLQ, by reason code (x-dlq-reason-code).",
		}, []string{"projection", "reason"}),
		SkippedEvents: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: obs.Namespace, Subsystem: "projector", Name: "skipped_events_total",
			Help: "Events an operator dropped with `projector dlq skip`, counted by the worker owning the aggregate's partition.",
		}, []string{"projection"}),
		Verified: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: obs.Namespace, Subsystem: "projection", Name: "verified_total",
			Help: "Aggregates the continuous verification checked against the event store, by result: equal, in_flight, quarantined, skipped (explained), missing, stale, different, unexpected (drift).",
		}, []string{"projection", "result"}),
		Drift: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: obs.Namespace, Subsystem: "projection", Name: "drift_aggregates",
			Help: "Aggregates whose document this worker found not to be what their events fold into, within the verification window (VERIFY_WINDOW), and has not found equal since.",
		}, []string{"projection"}),
	}
	reg.MustRegister(m.ConsumerLag, m.SyncLag, m.EndToEnd, m.Events, m.VersionGaps, m.Parked,
		m.Quarantined, m.HeldEvents, m.DeadLetters, m.SkippedEvents, m.Verified, m.Drift)
	return m
}

// initProjection creates the projection's series of the counters with a
// fixed label set at 0, so dashboards and alerts see them before the first
// dead letter.
func (m *Metrics) initProjection(name string) {
	for _, r := range Reasons {
		m.DeadLetters.WithLabelValues(name, r)
	}
	m.HeldEvents.WithLabelValues(name)
	m.SkippedEvents.WithLabelValues(name)
	m.Quarantined.WithLabelValues(name)
	for _, r := range Results {
		m.Verified.WithLabelValues(name, r)
	}
	m.Drift.WithLabelValues(name)
}
