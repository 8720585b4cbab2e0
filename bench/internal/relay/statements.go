package relay

import (
	"context"
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// statements reads pg_stat_statements (-statements): which statements
// the window's PostgreSQL time went to, the relay's and the load
// generator's alike (the view does not know the client).
type statements struct {
	pool *pgxpool.Pool
	view string // the view, qualified with the extension's schema
}

// stmtStat is one statement's counters.
type stmtStat struct {
	Calls  int64
	TimeMS float64 // total_exec_time
	Rows   int64
	Query  string
}

// openStatements finds pg_stat_statements, or says how to enable it.
func openStatements(ctx context.Context, pool *pgxpool.Pool) (*statements, error) {
	var schema string
	err := pool.QueryRow(ctx, `SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
		WHERE e.extname = 'pg_stat_statements'`).Scan(&schema)
	if err == pgx.ErrNoRows {
		return nil, fmt.Errorf("-statements needs the pg_stat_statements extension: shared_preload_libraries = 'pg_stat_statements' (restart), then CREATE EXTENSION pg_stat_statements")
	}
	if err != nil {
		return nil, fmt.Errorf("looking for pg_stat_statements: %w", err)
	}
	s := &statements{pool: pool, view: pgx.Identifier{schema, "pg_stat_statements"}.Sanitize()}
	if _, err := s.read(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// read returns the counters of the current database's statements by queryid.
func (s *statements) read(ctx context.Context) (map[int64]stmtStat, error) {
	rows, err := s.pool.Query(ctx, `SELECT queryid, calls, total_exec_time, rows, query FROM `+s.view+`
		WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) AND queryid IS NOT NULL`)
	if err != nil {
		return nil, fmt.Errorf("reading pg_stat_statements (is it in shared_preload_libraries?): %w", err)
	}
	out := map[int64]stmtStat{}
	var id int64
	var st stmtStat
	_, err = pgx.ForEachRow(rows, []any{&id, &st.Calls, &st.TimeMS, &st.Rows, &st.Query}, func() error {
		out[id] = st
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading pg_stat_statements: %w", err)
	}
	return out, nil
}

// maxStatements is how many statements a window lists.
const maxStatements = 15

// stmtDeltas returns the statements that ran between a and b, the
// busiest first.
func stmtDeltas(a, b map[int64]stmtStat) []stmtStat {
	var out []stmtStat
	for id, sb := range b {
		sa := a[id]
		d := stmtStat{Calls: sb.Calls - sa.Calls, TimeMS: sb.TimeMS - sa.TimeMS, Rows: sb.Rows - sa.Rows, Query: sb.Query}
		if d.Calls > 0 {
			out = append(out, d)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].TimeMS > out[j].TimeMS })
	if len(out) > maxStatements {
		out = out[:maxStatements]
	}
	return out
}

var spaces = regexp.MustCompile(`\s+`)

// shortQuery is a statement's text on one line, cut at n runes.
func shortQuery(q string, n int) string {
	q = strings.TrimSpace(spaces.ReplaceAllString(q, " "))
	if r := []rune(q); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return q
}

func printStatements(ds []stmtStat, events int) {
	fmt.Printf("    %8s %10s %9s %9s %10s  %s\n", "calls", "total ms", "ms/call", "rows", "µs/event", "statement")
	for _, d := range ds {
		fmt.Printf("    %8d %10.1f %9.3f %9d %10.2f  %s\n", d.Calls, d.TimeMS, d.TimeMS/float64(d.Calls), d.Rows,
			1000*d.TimeMS/float64(max(events, 1)), shortQuery(d.Query, 110))
	}
}
