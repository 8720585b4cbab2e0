// Package report renders a chaos run for people: the seed and how to
// reproduce it, the faults with their times, the operations by outcome,
// each invariant with what it checked, and for a failed run the first
// violation with its key's history and the logs around it.
package report

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"cqrsflow/chaos/checker"
	"cqrsflow/chaos/history"
	"cqrsflow/chaos/nemesis"
)

// Run is one chaos run as the report shows it.
type Run struct {
	Seed        uint64
	RunID       string
	Window      time.Duration // faults start in this window
	HealedAt    time.Time     // the last fault was healed (restarts can outlast the window)
	WorkloadEnd time.Time
	Started     time.Time
	Ended       time.Time
	OutDir      string
	HistoryPath string
	Reproduce   string // the command line that replays the seed
	Settings    []string
	Schedule    []nemesis.Step
	Faults      []history.Fault
	Attempts    []history.Attempt
	Results     []checker.Result
	Duplicates  int
	Notes       []string
	Failure     *Failure
}

// Failure is the context of the first violation.
type Failure struct {
	Invariant string
	Violation checker.Violation
	History   []history.Attempt
	Store     []string // the key's events, one line each
	Kafka     []string // the key's records
	Doc       string
	Logs      []Excerpt
}

// Excerpt is part of a process's log.
type Excerpt struct {
	Process string
	File    string
	Lines   []string
}

// Failed reports whether an invariant was violated.
func (r *Run) Failed() bool {
	for _, res := range r.Results {
		if !res.OK() {
			return true
		}
	}
	return false
}

// First returns the first violation in invariant order.
func (r *Run) First() (string, checker.Violation, bool) {
	for _, res := range r.Results {
		if !res.OK() {
			return res.ID, res.Violations[0], true
		}
	}
	return "", checker.Violation{}, false
}

// Outcome classes of an operation.
const (
	Acked     = "acknowledged"
	Refused   = "refused"
	Ambiguous = "outcome open"
)

// OpOutcome is an operation's outcome and, when refused, the answer.
func OpOutcome(attempts []history.Attempt) (outcome, detail string) {
	for _, a := range attempts {
		if a.Status >= 200 && a.Status < 300 {
			if a.Headers[history.HeaderReplayed] == "true" {
				return Acked, "replayed"
			}
			return Acked, ""
		}
	}
	for _, a := range attempts {
		if a.Status >= 400 && a.Status < 500 {
			code := a.ErrorCode()
			if code == "" {
				code = fmt.Sprint(a.Status)
			}
			return Refused, fmt.Sprintf("%d %s", a.Status, code)
		}
	}
	last := attempts[len(attempts)-1]
	if last.Status >= 500 {
		return Ambiguous, fmt.Sprint(last.Status)
	}
	if strings.HasPrefix(last.Err, "timeout") {
		return Ambiguous, "timeout"
	}
	return Ambiguous, "no answer"
}

// Render writes the report.
func Render(w io.Writer, r *Run) {
	verdict := "PASS"
	if r.Failed() {
		verdict = "FAIL"
	}
	fmt.Fprintf(w, "cqrsflow chaos run %s — %s\n\n", r.RunID, verdict)
	fmt.Fprintf(w, "seed        %d\n", r.Seed)
	fmt.Fprintf(w, "reproduce   %s\n", r.Reproduce)
	fmt.Fprintf(w, "workload    %s: faults planned in the first %s, the last healed at +%s, then %s without faults\n",
		r.WorkloadEnd.Sub(r.Started).Round(time.Second), r.Window, r.HealedAt.Sub(r.Started).Round(time.Second), r.WorkloadEnd.Sub(r.HealedAt).Round(time.Second))
	fmt.Fprintf(w, "started     %s, ended %s (%s)\n", r.Started.Format(time.RFC3339), r.Ended.Format(time.RFC3339), r.Ended.Sub(r.Started).Round(time.Second))
	fmt.Fprintf(w, "output      %s (history %s)\n", r.OutDir, r.HistoryPath)
	for _, s := range r.Settings {
		fmt.Fprintf(w, "            %s\n", s)
	}
	renderFaults(w, r)
	renderOps(w, r)
	renderResults(w, r)
	for _, n := range r.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
	if r.Failure != nil {
		renderFailure(w, r)
	}
}

func renderFaults(w io.Writer, r *Run) {
	fmt.Fprintf(w, "\nFaults (%d planned, %d injected)\n", len(r.Schedule), len(r.Faults))
	faults := append([]history.Fault(nil), r.Faults...)
	sort.Slice(faults, func(i, j int) bool { return faults[i].Seq < faults[j].Seq })
	byKind := map[string]int{}
	for _, f := range faults {
		byKind[f.Kind]++
		status := "ok"
		if f.Err != "" {
			status = "ERROR " + f.Err
		}
		param := f.Param
		if param != "" {
			param = " " + param
		}
		fmt.Fprintf(w, "  #%-3d +%7s  %-15s %-26s held %7s  %s\n", f.Seq, f.Start.Sub(r.Started).Round(100*time.Millisecond),
			f.Kind, f.Target+param, f.Healed.Sub(f.Start).Round(100*time.Millisecond), status)
		if len(f.Verified) > 0 {
			fmt.Fprintf(w, "        verified: %s\n", strings.Join(f.Verified, "; "))
		}
	}
	fmt.Fprintf(w, "  by kind:")
	for _, k := range nemesis.AllKinds {
		if byKind[k] > 0 {
			fmt.Fprintf(w, " %s %d,", k, byKind[k])
		}
	}
	fmt.Fprintln(w)
}

func renderOps(w io.Writer, r *Run) {
	ops := map[int64][]history.Attempt{}
	for _, a := range r.Attempts {
		ops[a.Op] = append(ops[a.Op], a)
	}
	type row struct{ acked, refused, open int }
	rows := map[string]*row{}
	details := map[string]int{}
	retried := 0
	for _, as := range ops {
		sort.Slice(as, func(i, j int) bool { return as[i].N < as[j].N })
		typ := as[0].Type
		if as[0].Misuse {
			typ += " (reused key)"
		}
		if rows[typ] == nil {
			rows[typ] = &row{}
		}
		if len(as) > 1 {
			retried++
		}
		outcome, detail := OpOutcome(as)
		switch outcome {
		case Acked:
			rows[typ].acked++
		case Refused:
			rows[typ].refused++
		default:
			rows[typ].open++
		}
		if detail != "" {
			details[outcome+": "+detail]++
		}
	}
	fmt.Fprintf(w, "\nOperations (%d, %d attempts, %d retried with their Idempotency-Key)\n", len(ops), len(r.Attempts), retried)
	fmt.Fprintf(w, "  %-28s %8s %8s %12s\n", "type", Acked, Refused, Ambiguous)
	var types []string
	for t := range rows {
		types = append(types, t)
	}
	sort.Strings(types)
	for _, t := range types {
		fmt.Fprintf(w, "  %-28s %8d %8d %12d\n", t, rows[t].acked, rows[t].refused, rows[t].open)
	}
	var ds []string
	for d := range details {
		ds = append(ds, d)
	}
	sort.Strings(ds)
	for _, d := range ds {
		fmt.Fprintf(w, "    %-40s %d\n", d, details[d])
	}
}

func renderResults(w io.Writer, r *Run) {
	fmt.Fprintf(w, "\nInvariants\n")
	for _, res := range r.Results {
		status := "ok"
		if !res.OK() {
			status = fmt.Sprintf("FAILED (%d violations)", len(res.Violations))
		}
		fmt.Fprintf(w, "  %-20s %7d checked  %s\n", res.ID, res.Checked, status)
		fmt.Fprintf(w, "  %-20s %s\n", "", res.Desc)
		for i, v := range res.Violations {
			if i == 10 {
				fmt.Fprintf(w, "      … %d more\n", len(res.Violations)-10)
				break
			}
			at := ""
			if !v.At.IsZero() {
				at = " at +" + v.At.Sub(r.Started).Round(time.Millisecond).String()
			}
			fmt.Fprintf(w, "      %s%s: %s\n", v.Key, at, v.Msg)
		}
	}
	fmt.Fprintf(w, "  (Kafka held %d duplicate records: at-least-once, allowed)\n", r.Duplicates)
}

func renderFailure(w io.Writer, r *Run) {
	f := r.Failure
	fmt.Fprintf(w, "\nFirst violation: %s on %s\n  %s\n", f.Invariant, f.Violation.Key, f.Violation.Msg)
	fmt.Fprintf(w, "\n  History of %s (attempts touching it)\n", f.Violation.Key)
	for _, a := range f.History {
		key := ""
		if a.IdemKey != "" {
			key = " key=" + a.IdemKey
		}
		ifm := ""
		if a.IfMatch > 0 {
			ifm = fmt.Sprintf(" if-match=%d", a.IfMatch)
		}
		answer := fmt.Sprintf("%d %s", a.Status, a.Resp)
		if a.Status == 0 {
			answer = "no answer: " + a.Err
		}
		fmt.Fprintf(w, "    +%-9s op %d/%d %s %s%s%s req=%s → %s\n", a.Start.Sub(r.Started).Round(time.Millisecond), a.Op, a.N,
			a.Method, a.Path, ifm, key, a.RequestID, answer)
	}
	section := func(title string, lines []string) {
		fmt.Fprintf(w, "\n  %s\n", title)
		if len(lines) == 0 {
			fmt.Fprintf(w, "    (none)\n")
		}
		for _, l := range lines {
			fmt.Fprintf(w, "    %s\n", l)
		}
	}
	section("Event store", f.Store)
	section("Kafka", f.Kafka)
	section("Elasticsearch document", []string{f.Doc})
	for _, e := range f.Logs {
		section(fmt.Sprintf("Log of %s around the violation (%s)", e.Process, e.File), e.Lines)
	}
}
