package eventstore

import (
	"github.com/prometheus/client_golang/prometheus"

	"cqrsflow/internal/obs"
)

// batchMetrics are the Batcher's metrics (docs/architecture.md, Metrics).
type batchMetrics struct {
	commands  prometheus.Histogram
	fallbacks prometheus.Counter
	unknown   prometheus.Counter
}

func newBatchMetrics(reg prometheus.Registerer) (*batchMetrics, error) {
	m := &batchMetrics{
		commands: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: obs.Namespace, Name: "group_commit_batch_commands",
			Help:    "Commands per group-commit transaction (1 when the api is idle).",
			Buckets: prometheus.ExponentialBuckets(1, 2, 11), // 1 … 1024, the largest MaxBatch
		}),
		fallbacks: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: obs.Namespace, Name: "group_commit_fallbacks_total",
			Help: "Group-commit transactions PostgreSQL refused as a whole (deadlock, racing create); their commands ran again one by one.",
		}),
		unknown: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: obs.Namespace, Name: "group_commit_unknown_total",
			Help: "Group-commit transactions whose COMMIT was cut off (connection or backend lost); their commands were answered 503.",
		}),
	}
	for _, c := range []prometheus.Collector{m.commands, m.fallbacks, m.unknown} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
