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
	FetchPaused *prometheus.GaugeVec // {projection}: 1 while fetching is paused at MaxParked
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
		FetchPaused: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: obs.Namespace, Subsystem: "projector", Name: "fetch_paused",
			Help: "1 while the worker stopped fetching because MAX_PARKED_EVENTS events are parked behind version gaps.",
		}, []string{"projection"}),
	}
	reg.MustRegister(m.ConsumerLag, m.SyncLag, m.EndToEnd, m.Events, m.VersionGaps, m.Parked, m.FetchPaused)
	return m
}
