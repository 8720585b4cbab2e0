package main

import (
	"log/slog"
	"runtime/debug"
)

// defaultGCPercent is the projector's garbage collection target when the
// environment sets no GOGC: the heap may grow to 1.5× what is live after a
// collection instead of Go's 2×. Most of a projector's heap is short-lived
// (decoded records and the documents of the batch in flight), so at the
// Go default its peak RSS is about twice its live data. In bench pipeline
// up to 3000 writes/s (2026-11-27, side by side): peak RSS 152 and 162 MiB
// at GOGC=100, 125 and 126 MiB at 50, for 0.01–0.02 more cores (0.11–0.12
// → 0.12–0.14). Set GOGC (or GOMEMLIMIT) to choose otherwise.
const defaultGCPercent = 50

// applyGCDefault sets defaultGCPercent unless GOGC is set (the Go runtime
// applied that value when the process started); it reports whether it
// set it.
func applyGCDefault(lookup func(string) (string, bool), log *slog.Logger) bool {
	if v, ok := lookup("GOGC"); ok {
		log.Debug("garbage collection target from GOGC", "gogc", v)
		return false
	}
	debug.SetGCPercent(defaultGCPercent)
	log.Debug("garbage collection target", "gogc", defaultGCPercent)
	return true
}
