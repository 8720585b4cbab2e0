package projector

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"
	"unicode"
)

// Output of the `projector dlq` commands: a table for people, or JSON
// (--json) for scripts.

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// cell makes an untrusted string safe and short for a table cell: quoted
// when it holds anything but printable characters, cut at n.
func cell(s string, n int) string {
	if s == "" {
		return "-"
	}
	for _, r := range s {
		if !unicode.IsPrint(r) || r == '\t' {
			s = strconv.Quote(s)
			break
		}
	}
	if len(s) > n {
		s = s[:n] + "…"
	}
	return s
}

func coords(topic string, partition int32, offset int64) string {
	if offset < 0 {
		return "-"
	}
	return fmt.Sprintf("%s/%d@%d", topic, partition, offset)
}

// WriteListing prints what List returned; at most limit records in the
// table (0: all).
func WriteListing(w io.Writer, l *DLQListing, asJSON bool, limit int) error {
	if asJSON {
		return writeJSON(w, l)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "QUARANTINED AGGREGATES of %s: %d\n", l.Projection, len(l.Quarantined))
	if len(l.Quarantined) > 0 {
		fmt.Fprintln(tw, "AGGREGATE\tBLOCKED AT\tREASON\tSINCE\tBLOCKING RECORD\tDETAIL")
		for _, q := range l.Quarantined {
			fmt.Fprintf(tw, "%s\tv%d\t%s\t%s\t%s\t%s\n", cell(q.AggregateID, 48), q.BlockedVersion, q.Reason,
				q.Since.Format(time.RFC3339), coords(q.Topic, q.Partition, q.Offset), cell(q.Detail, 80))
		}
	}
	shown := len(l.Records)
	if limit > 0 {
		shown = min(shown, limit)
	}
	fmt.Fprintf(tw, "\nDEAD LETTERS: %d shown, %d match, %d read\n", shown, len(l.Records), l.Scanned)
	if len(l.Records) > 0 {
		fmt.Fprintln(tw, "STATUS\tREASON\tAGGREGATE\tVERSION\tDOC\tEVENT TYPE\tSOURCE\tDLQ\tCOPIES\tDETAIL")
	}
	for i, r := range l.Records {
		if limit > 0 && i >= limit {
			fmt.Fprintf(tw, "… %d more (raise --limit, or filter with --aggregate / --reason)\n", len(l.Records)-limit)
			break
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d@%d\t%d\t%s\n", r.Status, r.ReasonCode, cell(r.AggregateID, 48),
			versionCell(r.Version), versionCell(r.DocumentVersion), cell(r.EventType, 32),
			coords(r.SourceTopic, r.SourcePartition, r.SourceOffset), r.DLQPartition, r.DLQOffset, r.Copies, cell(r.Reason, 80))
	}
	return tw.Flush()
}

func versionCell(v int64) string {
	if v <= 0 {
		return "-"
	}
	return "v" + strconv.FormatInt(v, 10)
}

// WriteRecords prints what Show returned.
func WriteRecords(w io.Writer, recs []DLQRecord, asJSON bool) error {
	if asJSON {
		return writeJSON(w, recs)
	}
	if len(recs) == 0 {
		_, err := fmt.Fprintln(w, "no dead letter matches")
		return err
	}
	for i, r := range recs {
		if i > 0 {
			fmt.Fprintln(w)
		}
		fmt.Fprintf(w, "dead letter %d@%d: %s, %s\n", r.DLQPartition, r.DLQOffset, r.Status, r.ReasonCode)
		fmt.Fprintf(w, "  aggregate %s %s (document %s), event %s %s\n", cell(r.AggregateID, 600), versionCell(r.Version),
			versionCell(r.DocumentVersion), cell(r.EventType, 100), cell(r.EventID, 300))
		fmt.Fprintf(w, "  source %s, dead-lettered %s\n", coords(r.SourceTopic, r.SourcePartition, r.SourceOffset), r.At.Format(time.RFC3339))
		fmt.Fprintf(w, "  reason: %s\n", cell(r.Reason, 2000))
		if b := r.Blocked; b != nil {
			fmt.Fprintf(w, "  held behind v%d (%s)\n", b.Version, coords(b.Topic, b.Partition, b.Offset))
		}
		fmt.Fprintln(w, "  headers:")
		for k, v := range r.Headers {
			fmt.Fprintf(w, "    %s: %s\n", cell(k, 100), cell(v, 2000))
		}
		if r.Value != nil {
			fmt.Fprintf(w, "  value: %s\n", r.Value)
		} else {
			fmt.Fprintf(w, "  value (not JSON): %s\n", strconv.Quote(r.Raw))
		}
	}
	return nil
}

// WriteRedrive prints what Redrive returned.
func WriteRedrive(w io.Writer, rep *RedriveReport, asJSON bool) error {
	if asJSON {
		return writeJSON(w, rep)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "redrive of %s: %d aggregates, %d dead letters, %d passes\n", rep.Projection, len(rep.Aggregates), rep.Records, rep.Passes)
	if len(rep.Aggregates) > 0 {
		fmt.Fprintln(tw, "AGGREGATE\tDOCUMENT\tRESULT\tDETAIL")
	}
	for _, r := range rep.Aggregates {
		result := "applied, released"
		switch {
		case r.BlockedAt > 0:
			result = fmt.Sprintf("still blocked at v%d (%s)", r.BlockedAt, r.ReasonCode)
		case !r.Released:
			result = "applied"
		}
		fmt.Fprintf(tw, "%s\t%s → %s\t%s\t%s\n", cell(r.AggregateID, 48), versionCell(r.FromVersion), versionCell(r.ToVersion), result, cell(r.Reason, 80))
	}
	return tw.Flush()
}

// WriteSkip prints what Skip returned.
func WriteSkip(w io.Writer, rep *SkipReport, asJSON bool) error {
	if asJSON {
		return writeJSON(w, rep)
	}
	fmt.Fprintf(w, "skipped version %d of %s (event %s); the quarantine is released\n", rep.Skipped, cell(rep.AggregateID, 600), cell(rep.EventID, 300))
	return WriteRedrive(w, rep.Redrive, false)
}
