package main

import (
	"io"
	"log/slog"
	"runtime/debug"
	"testing"
)

func TestApplyGCDefault(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	prev := debug.SetGCPercent(100)
	defer debug.SetGCPercent(prev)

	// GOGC set (to anything, "off" included): the runtime's value stays.
	for _, v := range []string{"100", "off", "200", ""} {
		debug.SetGCPercent(100)
		if applyGCDefault(func(string) (string, bool) { return v, true }, log) {
			t.Errorf("GOGC=%q: the default was applied", v)
		}
		if got := debug.SetGCPercent(100); got != 100 {
			t.Errorf("GOGC=%q: GC percent %d, want the runtime's 100", v, got)
		}
	}
	// GOGC unset: the projector's default.
	if !applyGCDefault(func(string) (string, bool) { return "", false }, log) {
		t.Fatal("GOGC unset: the default was not applied")
	}
	if got := debug.SetGCPercent(100); got != defaultGCPercent {
		t.Errorf("GOGC unset: GC percent %d, want %d", got, defaultGCPercent)
	}
}
