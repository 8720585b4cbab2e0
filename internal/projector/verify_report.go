package projector

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// resultLabels are the results as the text report names them.
var resultLabels = map[string]string{
	ResultEqual: "equal", ResultInFlight: "in flight", ResultQuarantined: "quarantined (explained)",
	ResultSkipped: "skipped (explained)", ResultMissing: "missing", ResultStale: "stale",
	ResultDifferent: "different", ResultUnexpected: "unexpected (no events)",
}

// WriteVerify prints what Verify found: counts, the first differences
// with their fields, what a repair did; or the report as JSON.
func WriteVerify(w io.Writer, r *VerifyReport, asJSON bool) error {
	if asJSON {
		return writeJSON(w, r)
	}
	fmt.Fprintf(w, "verify %s (%s, index %s): %d aggregates checked in %s\n", r.Projection, r.Selection, r.Index,
		r.Checked, (time.Duration(r.Seconds * float64(time.Second))).Round(time.Millisecond))
	fmt.Fprintf(w, "  events read %d in %d pages, at most %d rows held; %d differences checked twice\n",
		r.Stats.Events, r.Stats.Pages, r.Stats.MaxRowsHeld, r.Stats.Rechecked)
	if !r.InFlightAfter.IsZero() {
		fmt.Fprintf(w, "  in flight: aggregates with events recorded after %s (sync lag + margin) or still in the outbox\n",
			r.InFlightAfter.UTC().Format(time.RFC3339))
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	for _, res := range Results {
		fmt.Fprintf(tw, "  %s\t%d\t\n", resultLabels[res], r.Counts[res])
	}
	_ = tw.Flush()
	if len(r.NotFound) > 0 {
		fmt.Fprintf(w, "no events and no document: %s\n", strings.Join(cells(r.NotFound, 5), ", "))
	}
	if r.Drift == 0 {
		fmt.Fprintln(w, "drift: none")
	} else {
		fmt.Fprintf(w, "drift: %d aggregates", r.Drift)
		if len(r.Differences) < r.Drift {
			fmt.Fprintf(w, " (the first %d below)", len(r.Differences))
		}
		fmt.Fprintln(w)
	}
	for _, c := range r.Differences {
		writeCheck(w, c)
	}
	if r.Repair != nil {
		writeRepair(w, r.Repair)
	}
	return nil
}

func cells(ids []string, n int) []string {
	out := make([]string, 0, min(len(ids), n)+1)
	for i, id := range ids {
		if i == n {
			out = append(out, fmt.Sprintf("… %d more", len(ids)-n))
			break
		}
		out = append(out, cell(id, 64))
	}
	return out
}

func writeCheck(w io.Writer, c Check) {
	fmt.Fprintf(w, "  %s  %s: document v%d, events fold to v%d (latest event v%d)\n", cell(c.AggregateID, 64), c.Result,
		c.DocumentVersion, c.ExpectedVersion, c.EventVersion)
	if c.Note != "" {
		fmt.Fprintf(w, "      %s\n", cell(c.Note, 300))
	}
	for _, d := range c.Diffs {
		fmt.Fprintf(w, "      %s: expected %s, found %s\n", d.Field, rawOr(d.Expected), rawOr(d.Actual))
	}
}

func rawOr(b []byte) string {
	if len(b) == 0 {
		return "(absent)"
	}
	return cell(string(b), 200)
}

func writeRepair(w io.Writer, s *RepairStats) {
	fmt.Fprintf(w, "repair: %d written, %d deleted, %d kept (newer version stored), %d left, %d failed\n",
		s.Written, s.Deleted, s.Kept, s.Left, s.Failed)
	for _, it := range s.Items {
		v := ""
		if it.Version > 0 {
			v = fmt.Sprintf(" v%d", it.Version)
		}
		fmt.Fprintf(w, "  %s  %s: %s%s\n", cell(it.AggregateID, 64), it.Result, it.Action, v)
	}
	if s.Kept+s.Left+s.Failed > 0 {
		fmt.Fprintln(w, "  what a repair leaves: docs/operations.md#cqrsflowprojectiondrift (a large drift: projector rebuild)")
	}
}
