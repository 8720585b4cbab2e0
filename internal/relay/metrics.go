package relay

import (
	"github.com/prometheus/client_golang/prometheus"

	"cqrsflow/internal/obs"
)

// metrics of the relay; names are part of the contract (docs/architecture.md).
type metrics struct {
	pending      prometheus.Gauge
	oldestAge    prometheus.Gauge
	published    *prometheus.CounterVec
	publishLag   prometheus.Histogram
	errors       *prometheus.CounterVec
	ownedShards  prometheus.Gauge
	leasesLost   prometheus.Counter
	batches      prometheus.Counter
	batchRecords prometheus.Histogram
	liveRelays   prometheus.Gauge
	stragglers   prometheus.Counter
	lowWater     *prometheus.GaugeVec
	deadLetters  prometheus.Gauge
	heldRows     prometheus.Gauge
	deadLettered *prometheus.CounterVec
	discarded    prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		pending: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: obs.Namespace, Name: "outbox_pending_events",
			Help: "Rows in the outbox not yet acknowledged by Kafka, rows held behind dead letters excluded (estimate above 100k rows, exact below).",
		}),
		oldestAge: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: obs.Namespace, Name: "outbox_oldest_pending_age_seconds",
			Help: "Age of the oldest outbox row not held behind a dead letter (now - created_at); 0 when there is none.",
		}),
		published: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: obs.Namespace, Name: "relay_published_total",
			Help: "Records acknowledged by Kafka, by topic (a record republished after a failure counts again).",
		}, []string{"topic"}),
		publishLag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: obs.Namespace, Name: "relay_publish_lag_seconds",
			Help:    "Time from events.recorded_at (commit side) to the Kafka acknowledgement.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300},
		}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: obs.Namespace, Name: "relay_publish_errors_total",
			Help: "Records Kafka did not acknowledge (they stay in the outbox and are republished), by topic.",
		}, []string{"topic"}),
		ownedShards: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: obs.Namespace, Name: "relay_owned_shards",
			Help: "Outbox shards this relay currently holds a lease on.",
		}),
		leasesLost: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: obs.Namespace, Name: "relay_leases_lost_total",
			Help: "Shard leases this relay lost (expired or taken over) while it held them.",
		}),
		batches: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: obs.Namespace, Name: "relay_batches_total",
			Help: "Non-empty batches claimed from the outbox.",
		}),
		batchRecords: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: obs.Namespace, Name: "relay_batch_records",
			Help:    "Rows per claimed batch.",
			Buckets: prometheus.ExponentialBuckets(1, 4, 8),
		}),
		liveRelays: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: obs.Namespace, Name: "relay_live_relays",
			Help: "Relays with an unexpired heartbeat, as seen by this relay.",
		}),
		stragglers: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: obs.Namespace, Name: "relay_late_rows_total",
			Help: "Outbox rows found below a worker's low-water mark by the periodic rescan (inserted out of the append protocol; published late, not lost).",
		}),
		lowWater: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: obs.Namespace, Name: "relay_low_water_mark",
			Help: "Outbox id at or below which nothing of the worker's shards is pending; claims read above it. Stuck while a writing transaction runs long.",
		}, []string{"worker"}),
	}
	m.deadLetters = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: obs.Namespace, Name: "relay_dead_letters",
		Help: "Rows in outbox_dead_letters: events Kafka refused for good (or whose envelope cannot be built), waiting for `outbox-relay dead retry|discard`.",
	})
	m.heldRows = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: obs.Namespace, Name: "relay_held_rows",
		Help: "Outbox rows held behind a dead letter of their aggregate (published after it is retried or discarded).",
	})
	m.deadLettered = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: obs.Namespace, Name: "relay_dead_lettered_total",
		Help: "Outbox rows this relay moved to outbox_dead_letters, by reason (a Kafka error name, envelope, or other).",
	}, []string{"reason"})
	for _, reason := range reasons() {
		m.deadLettered.WithLabelValues(reason) // every series exists from the start, so increase() sees the first one
	}
	m.discarded = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: obs.Namespace, Name: "relay_discarded_events",
		Help: "Rows in outbox_discarded: dead letters an operator dropped from publication (they stay in the events table).",
	})
	reg.MustRegister(m.deadLetters, m.heldRows, m.deadLettered, m.discarded)
	reg.MustRegister(m.lowWater, m.stragglers, m.pending, m.oldestAge, m.published, m.publishLag, m.errors,
		m.ownedShards, m.leasesLost, m.batches, m.batchRecords, m.liveRelays)
	return m
}
