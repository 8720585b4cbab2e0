package checker

import (
	"sort"
	"strings"
	"time"

	"cqrsflow/chaos/history"
)

func (x *index) drained() Result {
	r := Result{ID: "drained", Desc: "at the end the outbox is empty but for the oversize faults' rows held behind their dead letters, and every consumer group committed up to the end of its topic"}
	r.Checked++
	left := 0
	for _, o := range x.in.Outbox {
		if x.oversize[o.AggregateID] == nil || !x.held(o) {
			left++
		}
	}
	if left != 0 {
		r.fail("outbox", time.Time{}, "%d outbox rows left (besides %d held behind dead letters of oversize faults)", left, len(x.in.Outbox)-left)
	}
	groups := make([]string, 0, len(x.in.GroupLag))
	for g := range x.in.GroupLag {
		groups = append(groups, g)
	}
	sort.Strings(groups)
	for _, g := range groups {
		r.Checked++
		if lag := x.in.GroupLag[g]; lag != 0 {
			r.fail(g, time.Time{}, "consumer group %s is %d records behind the end of its topic", g, lag)
		}
	}
	return r
}

// held reports whether an outbox row is held behind a dead letter: one of
// its aggregate with a lower id (outbox.HeldSQL).
func (x *index) held(o OutboxRow) bool {
	for _, d := range x.in.DeadLetters {
		if d.AggregateID == o.AggregateID && d.AggregateType == o.AggregateType && d.ID < o.ID {
			return true
		}
	}
	return false
}

// heldRows counts the outbox rows held behind dead letters.
func (x *index) heldRows() int {
	n := 0
	for _, o := range x.in.Outbox {
		if x.held(o) {
			n++
		}
	}
	return n
}

// endMetrics are the gauges checked once the pipeline drained, by the
// process kind that exports them (summed over label values), with the
// value each must read: 0 but for the relay's dead letters and the rows
// held behind them, which must read what outbox_dead_letters and the
// outbox hold (the relay's pending rows and their age leave held rows
// out, so they read 0 too).
func (x *index) endMetrics(kind string) []struct {
	name string
	want float64
} {
	type m = struct {
		name string
		want float64
	}
	switch kind {
	case "relay":
		return []m{{"cqrsflow_outbox_pending_events", 0}, {"cqrsflow_outbox_oldest_pending_age_seconds", 0},
			{"cqrsflow_relay_dead_letters", float64(len(x.in.DeadLetters))}, {"cqrsflow_relay_held_rows", float64(x.heldRows())}}
	case "projector":
		return []m{{"cqrsflow_projector_consumer_lag_records", 0}, {"cqrsflow_projector_sync_lag_seconds", 0}, {"cqrsflow_projector_parked_events", 0}}
	}
	return nil
}

func procKind(p string) string {
	if strings.HasPrefix(p, "relay") {
		return "relay"
	}
	if strings.HasPrefix(p, "projector") {
		return "projector"
	}
	return ""
}

func (x *index) metricsTruthful() Result {
	r := Result{ID: "metrics-truthful", Desc: "at the end every relay reports 0 pending outbox rows (held rows excluded) and the dead letters and held rows the store has, and every projector 0 consumer lag, 0 sync lag and 0 parked events"}
	for _, p := range x.in.MetricProcs {
		for _, g := range x.endMetrics(procKind(p)) {
			r.Checked++
			n, sum := 0, 0.0
			var parts []string
			for _, s := range x.in.Metrics {
				if s.Process == p && s.Name == g.name {
					n++
					sum += s.Value
					if s.Value != 0 {
						parts = append(parts, sprintf("%v=%g", s.Labels, s.Value))
					}
				}
			}
			switch {
			case n == 0:
				r.fail(p, time.Time{}, "%s does not report %s", p, g.name)
			case sum != g.want:
				r.fail(p, time.Time{}, "%s reports %s = %g after the pipeline drained, want %g: %s", p, g.name, sum, g.want, strings.Join(parts, ", "))
			}
		}
	}
	return r
}

// unavailable lists the fault windows in which a 503 is the right answer
// for writes (PostgreSQL unreachable for the api) and for reads
// (Elasticsearch unreachable for the api).
func (x *index) unavailable(read bool) [][2]time.Time {
	var out [][2]time.Time
	for _, f := range x.in.Faults {
		var hit bool
		if read {
			hit = f.Kind == "es-restart" || (f.Kind == "pause" && f.Target == "elasticsearch") ||
				((f.Kind == "cut" || f.Kind == "delay") && f.Target == "api->elasticsearch")
		} else {
			hit = f.Kind == "pg-crash" || f.Kind == "pg-backend-kill" || (f.Kind == "pause" && f.Target == "postgres") ||
				((f.Kind == "cut" || f.Kind == "delay") && f.Target == "api->postgres")
		}
		if hit {
			end := f.Healed
			if end.IsZero() {
				end = f.Start
			}
			out = append(out, [2]time.Time{f.Start, end.Add(x.in.Grace)})
		}
	}
	return out
}

func (x *index) http5xx() Result {
	r := Result{ID: "http-5xx", Desc: "no 5xx answer other than 503, and 503 only while PostgreSQL (writes) or Elasticsearch (reads) was unavailable to the api"}
	writes, reads := x.unavailable(false), x.unavailable(true)
	for i := range x.in.Attempts {
		a := &x.in.Attempts[i]
		if a.Status < 500 {
			continue
		}
		r.Checked++
		if a.Status != 503 {
			r.fail(a.ID, a.End, "op %d (%s %s) was answered %d %s", a.Op, a.Method, a.Path, a.Status, a.Resp)
			continue
		}
		windows, what := writes, "PostgreSQL"
		if history.IsRead(a.Type) {
			windows, what = reads, "Elasticsearch"
		}
		in := false
		for _, w := range windows {
			if !a.End.Before(w[0]) && !a.Start.After(w[1]) {
				in = true
				break
			}
		}
		if !in {
			r.fail(a.ID, a.End, "op %d (%s %s) was answered 503 at %s while no fault made %s unavailable: %s", a.Op, a.Method, a.Path, a.End.Format("15:04:05.000"), what, a.Resp)
		}
	}
	return r
}

func (x *index) noPanic() Result {
	r := Result{ID: "no-panic", Desc: "no panic, fatal error or data race in any log", Checked: x.in.LogLines}
	for _, h := range x.in.LogHits {
		r.fail(h.Process, time.Time{}, "%s:%d: %s", h.File, h.Line, h.Text)
	}
	return r
}

// noDrift: the product's own verification (each projector folds
// aggregates of its partitions from the event store and compares the
// documents, in flight excepted) agrees with the read-model invariant.
func (x *index) noDrift() Result {
	// Checked: the aggregates the projectors running at the end verified
	// (cqrsflow_projection_verified_total, any result; a restarted
	// projector's count starts over).
	checked := 0.0
	for _, s := range x.in.Metrics {
		if s.Name == "cqrsflow_projection_verified_total" {
			checked += s.Value
		}
	}
	r := Result{ID: "no-drift", Desc: "the projectors' continuous verification reported no drift (a document that is not the fold of its events, outside the in-flight window)", Checked: int(checked)}
	for _, h := range x.in.DriftLogs {
		r.fail(h.Process, time.Time{}, "%s:%d: %s", h.File, h.Line, h.Text)
	}
	return r
}

func (x *index) processes() Result {
	r := Result{ID: "processes", Desc: "no binary exited by itself once running or hung (alive without answering /healthz); every SIGTERM of a running binary ended in exit status 0", Checked: x.in.Starts}
	for _, h := range x.in.Hangs {
		r.fail(h.Process, h.At, "%s hung: %s", h.Process, h.Msg)
	}
	for _, e := range x.in.Exits {
		switch {
		case e.DuringStartup:
			// A start-up failure (a dependency down at start): the report
			// lists them; a process that never gets past it hangs or never
			// becomes ready, which is checked.
		case !e.Expected:
			r.fail(e.Process, e.At, "%s exited by itself (%s)", e.Process, e.Status)
		case e.Graceful && e.Status != "exit status 0":
			r.fail(e.Process, e.At, "%s ended with %s after SIGTERM (want exit status 0)", e.Process, e.Status)
		}
	}
	return r
}

func (x *index) faultsVerified() Result {
	r := Result{ID: "faults-verified", Desc: "every fault was injected and verified (the process gone or stopped, the service down, the link cut or slow) and healed"}
	for _, f := range x.in.Faults {
		r.Checked++
		switch {
		case f.Err != "":
			r.fail(f.Kind+" "+f.Target, f.Start, "fault #%d %s %s: %s", f.Seq, f.Kind, f.Target, f.Err)
		case len(f.Verified) == 0:
			r.fail(f.Kind+" "+f.Target, f.Start, "fault #%d %s %s: nothing verified it", f.Seq, f.Kind, f.Target)
		}
	}
	return r
}

func (x *index) recovered() Result {
	r := Result{ID: "recovered", Desc: "writes were acknowledged after the last fault was healed"}
	acked := 0
	for i := range x.in.Attempts {
		a := &x.in.Attempts[i]
		if history.IsRead(a.Type) || a.Start.Before(x.in.HealedAt) {
			continue
		}
		r.Checked++
		if a.Status >= 200 && a.Status < 300 {
			acked++
		}
	}
	if acked == 0 {
		r.fail("api", x.in.HealedAt, "none of %d writes sent after the last heal (%s) was acknowledged", r.Checked, x.in.HealedAt.Format("15:04:05"))
	}
	return r
}
