package pipeline

import (
	"context"
	"strings"
	"time"
)

// appName is the PostgreSQL application_name of one of the run's processes.
func (pl *pipeline) appName(proc string) string { return "bench-" + pl.runID + "-" + proc }

// pgGroupPrefix names the CPU groups of PostgreSQL backends by client.
const pgGroupPrefix = "pg backends of "

// pgBackends maps the pids of the PostgreSQL backends serving the run's
// processes to a CPU group name ("pg backends of api"). Backends of other
// clients stay in the "postgresql (rest)" group.
func (pl *pipeline) pgBackends(ctx context.Context) map[int]string {
	if pl.pgAdmin == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	prefix := pl.appName("")
	rows, err := pl.pgAdmin.Query(ctx, "SELECT pid, application_name FROM pg_stat_activity WHERE starts_with(application_name, $1)", prefix)
	if err != nil {
		return nil
	}
	defer rows.Close()
	out := map[int]string{}
	for rows.Next() {
		var pid int
		var app string
		if rows.Scan(&pid, &app) == nil {
			out[pid] = pgGroupPrefix + strings.TrimPrefix(app, prefix)
		}
	}
	return out
}
