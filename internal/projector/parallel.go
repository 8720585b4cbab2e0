package projector

import (
	"errors"
	"runtime"
	"sync"
)

// parallelMin is the smallest amount of work parallel splits: below it
// the goroutines cost more than they save.
const parallelMin = 256

// parallel runs fn over [0,n) split into one contiguous range per CPU
// (GOMAXPROCS), or inline when n is small, and returns the ranges'
// errors joined.
func parallel(n int, fn func(lo, hi int) error) error {
	parts := min(runtime.GOMAXPROCS(0), n/parallelMin)
	if parts <= 1 {
		return fn(0, n)
	}
	errs := make([]error, parts)
	var wg sync.WaitGroup
	for k := range parts {
		wg.Go(func() { errs[k] = fn(k*n/parts, (k+1)*n/parts) })
	}
	wg.Wait()
	return errors.Join(errs...)
}
