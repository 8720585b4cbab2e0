package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"cqrsflow/chaos/nemesis"
)

var serviceScript = map[string]string{"postgres": "pg.sh", "kafka": "kafka.sh", "elasticsearch": "es.sh"}

var serviceOff = map[string]int{"postgres": offPostgres, "kafka": offKafka, "elasticsearch": offES}

// pauseService SIGSTOPs every process of a service (for PostgreSQL the
// postmaster and all its backends) and checks each is stopped.
func (p *pipeline) pauseService(service string, verified func(string, ...any)) (func(context.Context) error, error) {
	pids := p.h.stk.pids(service)
	if len(pids) == 0 {
		return nil, fmt.Errorf("%s is not running", service)
	}
	for _, pid := range pids {
		_ = syscall.Kill(pid, syscall.SIGSTOP)
	}
	resume := func() {
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGCONT)
		}
	}
	for _, pid := range pids {
		if err := waitState(pid, func(s byte) bool { return s == 'T' }, 5*time.Second); err != nil && procState(pid) != 0 {
			resume()
			return nil, fmt.Errorf("%s: %w", service, err)
		}
	}
	verified("%s: %d processes in state T (pid %d first)", service, len(pids), pids[0])
	return func(context.Context) error {
		resume()
		for _, pid := range pids {
			if err := waitState(pid, func(s byte) bool { return s != 'T' && s != 't' }, 5*time.Second); err != nil && procState(pid) != 0 {
				return fmt.Errorf("%s: %w", service, err)
			}
		}
		verified("%s running again", service)
		return nil
	}, nil
}

// pgCrash shuts PostgreSQL down in immediate mode: every backend quits
// without a checkpoint, as in a crash; the restart runs crash recovery.
func (p *pipeline) pgCrash(ctx context.Context, verified func(string, ...any)) (func(context.Context) error, error) {
	stk := p.h.stk
	pids := stk.pids("postgres")
	if len(pids) == 0 {
		return nil, errors.New("postgres is not running")
	}
	bin, err := pgBin()
	if err != nil {
		return nil, err
	}
	data := filepath.Join(stk.dir, "postgres", "data")
	cctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(cctx, "runuser", "-u", "postgres", "--", filepath.Join(bin, "pg_ctl"), "stop", "-D", data, "-m", "immediate", "-w", "-t", "30").CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("pg_ctl stop -m immediate: %w: %s", err, out)
	}
	heal := func(ctx context.Context) error { return p.startService(ctx, "postgres", verified) }
	if err := waitGone(pids[0], stk.addr(offPostgres), 15*time.Second); err != nil {
		return heal, fmt.Errorf("postgres after the immediate shutdown: %w", err)
	}
	verified("postmaster %d and its %d backends gone (immediate shutdown), port %d refuses", pids[0], len(pids)-1, stk.port(offPostgres))
	return heal, nil
}

func pgBin() (string, error) {
	m, _ := filepath.Glob("/usr/lib/postgresql/*/bin/pg_ctl")
	if len(m) == 0 {
		return "", errors.New("pg_ctl not found under /usr/lib/postgresql (run `make up` to install PostgreSQL)")
	}
	return filepath.Dir(m[len(m)-1]), nil
}

// pgBackendKill SIGKILLs one backend serving the target component: the
// postmaster then ends every other backend and reinitializes (crash
// recovery without a restart), which its log says.
func (p *pipeline) pgBackendKill(ctx context.Context, component string, verified func(string, ...any)) (func(context.Context) error, error) {
	stk := p.h.stk
	qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(qctx, stk.PostgresURL(stk.port(offPostgres)))
	if err != nil {
		return nil, fmt.Errorf("connecting to find a backend: %w", err)
	}
	var pid int
	var app string
	err = conn.QueryRow(qctx, `SELECT pid, application_name FROM pg_stat_activity
		WHERE application_name LIKE 'chaos-%' AND pid <> pg_backend_pid()
		ORDER BY application_name = $1 DESC, random() LIMIT 1`, "chaos-"+component).Scan(&pid, &app)
	conn.Close(context.Background())
	if err != nil {
		return nil, fmt.Errorf("no backend of the pipeline to kill: %w", err)
	}
	logPath := filepath.Join(stk.dir, "postgres", "postgres.log")
	offset := fileSize(logPath)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		return nil, fmt.Errorf("SIGKILL backend %d: %w", pid, err)
	}
	want := fmt.Sprintf("(PID %d) was terminated by signal 9", pid)
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(readFrom(logPath, offset), want) {
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("killed backend %d (%s), but %s does not say %q", pid, app, logPath, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
	verified("backend %d of %s killed; the postmaster log says it %s and reinitializes", pid, app, strings.TrimPrefix(want, fmt.Sprintf("(PID %d) ", pid)))
	return func(ctx context.Context) error {
		return waitSQL(ctx, stk.PostgresURL(stk.port(offPostgres)), 2*time.Minute, verified)
	}, nil
}

func fileSize(path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return st.Size()
}

func readFrom(path string, offset int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	if _, err := f.Seek(offset, 0); err != nil {
		return ""
	}
	b := make([]byte, 1<<20)
	n, _ := f.Read(b)
	return string(b[:n])
}

// waitSQL waits until PostgreSQL runs a query again.
func waitSQL(ctx context.Context, url string, timeout time.Duration, verified func(string, ...any)) error {
	start := time.Now()
	for {
		qctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		conn, err := pgx.Connect(qctx, url)
		if err == nil {
			_, err = conn.Exec(qctx, "SELECT 1")
			conn.Close(context.Background())
		}
		cancel()
		if err == nil {
			verified("PostgreSQL answers again after %s", time.Since(start).Round(100*time.Millisecond))
			return nil
		}
		if time.Since(start) > timeout {
			return fmt.Errorf("PostgreSQL does not answer %s after the fault: %w", timeout, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// restartService kills the broker (SIGKILL or SIGTERM) or the
// Elasticsearch node (SIGKILL), checks it is gone and its port refuses,
// and starts it again with its script after the hold.
func (p *pipeline) restartService(ctx context.Context, s nemesis.Step, verified func(string, ...any)) (func(context.Context) error, error) {
	stk := p.h.stk
	service := s.Target
	pids := stk.pids(service)
	if len(pids) == 0 {
		return nil, fmt.Errorf("%s is not running", service)
	}
	sig, signame := syscall.SIGKILL, "SIGKILL"
	if s.Param == "TERM" {
		sig, signame = syscall.SIGTERM, "SIGTERM"
	}
	_ = syscall.Kill(pids[0], syscall.SIGCONT)
	if err := syscall.Kill(pids[0], sig); err != nil {
		return nil, fmt.Errorf("%s to %s (pid %d): %w", signame, service, pids[0], err)
	}
	heal := func(ctx context.Context) error { return p.startService(ctx, service, verified) }
	if err := waitGone(pids[0], stk.addr(serviceOff[service]), 90*time.Second); err != nil {
		_ = syscall.Kill(pids[0], syscall.SIGKILL) // the script must find it gone
		return heal, fmt.Errorf("%s after %s: %w", service, signame, err)
	}
	verified("%s pid %d gone after %s, port %d refuses", service, pids[0], signame, stk.port(serviceOff[service]))
	return heal, nil
}

// waitGone waits until pid is gone (or a zombie) and addr refuses
// connections.
func waitGone(pid int, addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		st := procState(pid)
		gone := st == 0 || st == 'Z'
		if gone && refused(addr) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("pid %d gone %v, %s refuses %v after %s", pid, gone, addr, refused(addr), timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// startService starts a stopped service with its script (bounded by the
// script's own waits) and checks it answers.
func (p *pipeline) startService(ctx context.Context, service string, verified func(string, ...any)) error {
	start := time.Now()
	if err := p.h.stk.script(ctx, 5*time.Minute, serviceScript[service], "start"); err != nil {
		return err
	}
	pids := p.h.stk.pids(service)
	if len(pids) == 0 {
		return fmt.Errorf("%s started, but no process of it is found", service)
	}
	verified("%s started again in %s (pid %d)", service, time.Since(start).Round(100*time.Millisecond), pids[0])
	return nil
}
