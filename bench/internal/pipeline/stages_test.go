package pipeline

import (
	"math"
	"testing"
	"time"

	"cqrsflow/bench/internal/stats"
)

func TestStageFrom(t *testing.T) {
	inf := math.Inf(1)
	before := stats.Histogram{Bounds: []float64{1, 2, inf}, Cum: []float64{10, 10, 10}, Count: 10, Sum: 5}
	after := stats.Histogram{Bounds: []float64{1, 2, inf}, Cum: []float64{10, 10, 30}, Count: 30, Sum: 105}
	st := stageFrom("x", stats.Histogram{})
	if st.Mean != 0 || st.P99 != 0 {
		t.Errorf("stageFrom(empty) = %+v, want zeros", st)
	}
	if st := stageFrom("y", after.Sub(before)); st.Mean != 5*time.Second || st.P99 != 2*time.Second {
		t.Errorf("stageFrom = %+v", st)
	}
}
