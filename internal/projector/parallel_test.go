package projector

import (
	"errors"
	"fmt"
	"runtime"
	"testing"
)

func TestParallelSplitsAndJoinsErrors(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(3))
	for _, n := range []int{0, 1, parallelMin - 1, 3 * parallelMin, 10*parallelMin + 7} {
		seen := make([]int32, n)
		if err := parallel(n, func(lo, hi int) error {
			for i := lo; i < hi; i++ {
				seen[i]++
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		for i, c := range seen {
			if c != 1 {
				t.Fatalf("n=%d: index %d visited %d times", n, i, c)
			}
		}
	}
	boom := errors.New("boom")
	err := parallel(10*parallelMin, func(lo, hi int) error {
		if lo > 0 {
			return fmt.Errorf("range %d: %w", lo, boom)
		}
		return nil
	})
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want one wrapping boom", err)
	}
}
