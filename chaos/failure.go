package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"cqrsflow/chaos/checker"
	"cqrsflow/chaos/report"
)

// failure gathers what a reader needs to understand the first violation:
// every attempt touching its key, the key's events, records and document,
// and the binaries' log lines about the key or around the moment.
func (p *pipeline) failure(in *checker.Input, invariant string, v checker.Violation) *report.Failure {
	key := v.Key
	f := &report.Failure{Invariant: invariant, Violation: v}
	for _, a := range in.Attempts {
		ack, _ := a.Ack()
		if a.ID == key || ack.ID == key || (a.IdemKey != "" && a.IdemKey == key) {
			f.History = append(f.History, a)
		}
	}
	sort.Slice(f.History, func(i, j int) bool { return f.History[i].Start.Before(f.History[j].Start) })
	for _, e := range in.Events {
		if e.AggregateID == key || (e.Metadata.IdempotencyKey != "" && e.Metadata.IdempotencyKey == key) {
			f.Store = append(f.Store, fmt.Sprintf("%s v%d %s pos=%d req=%s key=%s recorded=%s payload=%s", e.AggregateID, e.Version, e.Type,
				e.GlobalPosition, e.Metadata.RequestID, e.Metadata.IdempotencyKey, e.RecordedAt.Format("15:04:05.000000"), clip(e.Payload, 300)))
		}
	}
	for _, o := range in.Outbox {
		if o.AggregateID == key {
			f.Store = append(f.Store, fmt.Sprintf("outbox id %d: %s v%d event %s", o.ID, o.AggregateID, o.Version, o.EventID))
		}
	}
	for _, d := range in.DeadLetters {
		if d.AggregateID == key {
			f.Store = append(f.Store, fmt.Sprintf("outbox_dead_letters id %d: %s v%d event %s, %s after %d attempts: %s", d.ID, d.AggregateID, d.Version,
				d.EventID, d.Reason, d.Attempts, clip([]byte(d.Error), 300)))
		}
	}
	for _, r := range append(append([]checker.Record(nil), in.Records...), in.DLQ...) {
		if r.Key != key {
			continue
		}
		var env struct {
			Version int64  `json:"version"`
			EventID string `json:"event_id"`
		}
		_ = json.Unmarshal(r.Value, &env)
		f.Kafka = append(f.Kafka, fmt.Sprintf("%s:%d@%d v%d event %s", r.Topic, r.Partition, r.Offset, env.Version, env.EventID))
	}
	f.Doc = "(none)"
	for _, docs := range in.Docs {
		for _, d := range docs {
			if d.ID == key {
				f.Doc = fmt.Sprintf("_version %d %s", d.ESVersion, d.Source)
			}
		}
	}
	at := v.At
	if at.IsZero() && len(f.History) > 0 {
		at = f.History[len(f.History)-1].End
	}
	if b, ok := p.bins[key]; ok {
		// A process's own violation (a hang, an exit): its log before the
		// moment, and the harness's goroutine dump if there is one.
		f.Logs = append(f.Logs, report.Excerpt{Process: key, File: b.logPath, Lines: processExcerpt(b.logPath, at, 40)})
		return f
	}
	for _, c := range allComponents {
		if lines := logExcerpt(p.bins[c].logPath, key, at, 40); len(lines) > 0 {
			f.Logs = append(f.Logs, report.Excerpt{Process: c, File: p.bins[c].logPath, Lines: lines})
		}
	}
	return f
}

// clip shortens b to max bytes for the report (an oversize fault's
// payload is megabytes).
func clip(b []byte, max int) string {
	if len(b) <= max {
		return string(b)
	}
	return fmt.Sprintf("%s… (%d bytes)", b[:max], len(b))
}

// processExcerpt returns a process's log lines up to at (+5 s) that are
// not routine (warnings, errors, the harness's markers, exit messages),
// the last max of them, then the frames of the cqrsflow code in the
// goroutine dump that follows a dump marker near at.
func processExcerpt(path string, at time.Time, max int) []string {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var before, frames []string
	var header string
	inDump, wantFile := false, false
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 4<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, dumpMarker) {
			inDump, frames = true, frames[:0]
		} else if strings.HasPrefix(line, "=== chaos: start") {
			if inDump && len(frames) > 0 && !at.IsZero() && markerTime(line).After(at.Add(-5*time.Second)) {
				break // the dump that belongs to the violation
			}
			inDump = false
		}
		if inDump {
			// Keep the project's frames (function and file:line) under
			// their goroutine's header.
			switch {
			case strings.HasPrefix(line, "goroutine "):
				header, wantFile = line, false
			case strings.HasPrefix(line, "main.") || strings.HasPrefix(line, "cqrsflow/"):
				if header != "" {
					frames, header = append(frames, "  "+header), ""
				}
				frames, wantFile = append(frames, "    "+line), true
			case wantFile:
				frames, wantFile = append(frames, "    "+strings.TrimSpace(line)), false
			}
			if len(frames) > 60 {
				frames = frames[:60]
			}
			continue
		}
		var rec struct {
			Time  time.Time `json:"time"`
			Level string    `json:"level"`
		}
		isJSON := json.Unmarshal([]byte(line), &rec) == nil
		if isJSON && !at.IsZero() && rec.Time.After(at.Add(5*time.Second)) {
			continue
		}
		if !isJSON || rec.Level == "WARN" || rec.Level == "ERROR" {
			if len(line) > 300 {
				line = line[:300] + "…"
			}
			before = append(before, line)
		}
	}
	if len(before) > max {
		before = before[len(before)-max:]
	}
	return append(before, frames...)
}

// markerTime reads the time of a "=== chaos: start #n of X at <time>" line.
func markerTime(line string) time.Time {
	i := strings.LastIndex(line, " at ")
	if i < 0 {
		return time.Time{}
	}
	t, _ := time.Parse(time.RFC3339Nano, strings.TrimSpace(line[i+4:]))
	return t
}

// logExcerpt returns the log lines naming key, or if none, those within
// 3 s of at (slog JSON lines carry "time"); at most max lines.
func logExcerpt(path, key string, at time.Time, max int) []string {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var byKey, byTime []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 4<<20)
	for sc.Scan() {
		line := sc.Text()
		if len(line) > 400 {
			line = line[:400] + "…"
		}
		if key != "" && strings.Contains(line, key) && len(byKey) < max {
			byKey = append(byKey, line)
		}
		if at.IsZero() || len(byTime) >= max {
			continue
		}
		var rec struct {
			Time time.Time `json:"time"`
		}
		if json.Unmarshal([]byte(sc.Text()), &rec) == nil && !rec.Time.IsZero() && rec.Time.Sub(at).Abs() <= 3*time.Second {
			byTime = append(byTime, line)
		}
	}
	if len(byKey) > 0 {
		return byKey
	}
	return byTime
}
