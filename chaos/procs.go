package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"cqrsflow/chaos/checker"
)

// binary is one process of the pipeline (api, relay-N, projector-N). The
// harness starts it, the nemesis kills, stops or pauses it; an exit the
// harness did not cause is recorded and the process is started again, as
// a process supervisor would.
type binary struct {
	name    string
	path    string
	args    []string
	env     []string
	addr    string // its HTTP server (health, metrics)
	logPath string
	log     *slog.Logger

	mu      sync.Mutex
	cmd     *exec.Cmd
	done    chan struct{}
	expect  string // "kill" | "term" | "quit": the next exit is the harness's doing
	healthy bool   // answered /healthz since its last start
	retired bool   // stopped for good: do not restart
	exits   []checker.Exit
	starts  int
	// The watchdog's view: when the process last answered /healthz (or
	// was started or resumed), and whether the nemesis holds it stopped.
	lastAlive time.Time
	started   time.Time
	paused    bool
	hangs     []checker.Hang
	failures  int // exits in a row during start-up (restart backoff)
}

// start starts the process (appending to its log) and watches it.
func (b *binary) start() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cmd != nil {
		return fmt.Errorf("%s is already running (pid %d)", b.name, b.cmd.Process.Pid)
	}
	f, err := os.OpenFile(b.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("opening %s log: %w", b.name, err)
	}
	b.starts++
	fmt.Fprintf(f, "=== chaos: start #%d of %s at %s\n", b.starts, b.name, time.Now().UTC().Format(time.RFC3339Nano))
	cmd := exec.Command(b.path, b.args...)
	cmd.Env = b.env
	cmd.Stdout, cmd.Stderr = f, f
	// Pdeathsig: the binaries die with the harness, whatever kills it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("starting %s: %w", b.name, err)
	}
	done := make(chan struct{})
	b.cmd, b.done, b.expect, b.healthy, b.paused, b.lastAlive, b.started = cmd, done, "", false, false, time.Now(), time.Now()
	go b.wait(cmd, f, done)
	return nil
}

func (b *binary) wait(cmd *exec.Cmd, f *os.File, done chan struct{}) {
	err := cmd.Wait()
	f.Close()
	status := "exit status 0"
	if err != nil {
		status = err.Error()
	}
	b.mu.Lock()
	// A start-up failure: the process never answered /healthz, or ended
	// within startupWindow of its start (a binary may serve /healthz
	// before its workers have connected).
	startup, expect := !b.healthy || time.Since(b.started) < startupWindow, b.expect
	e := checker.Exit{Process: b.name, At: time.Now(), Status: status, Expected: expect != "",
		Graceful: expect == "term", DuringStartup: startup}
	if expect == "" {
		e.Reason = lastLine(b.logPath)
	}
	b.exits = append(b.exits, e)
	b.cmd = nil
	restart := (expect == "" || expect == "quit") && !b.retired
	if startup {
		b.failures++
	} else {
		b.failures = 0
	}
	wait := time.Duration(min(1<<min(b.failures, 4), 10)) * time.Second
	b.mu.Unlock()
	close(done)
	if !restart {
		return
	}
	// Not the harness's doing (or a hung process it dumped): keep the
	// pipeline running, as a supervisor would, and let the checker report
	// it. An exit before the process ever answered is a start-up failure
	// (a dependency down at start), retried with a growing pause.
	if expect == "" {
		b.log.Warn("process exited by itself; restarting", "process", b.name, "status", status, "during_startup", startup, "after", wait.String())
	}
	time.Sleep(wait)
	b.mu.Lock()
	retired := b.retired || b.cmd != nil
	b.mu.Unlock()
	if !retired {
		if err := b.start(); err != nil {
			b.log.Error("restart failed", "process", b.name, "err", err)
			return
		}
		_ = b.waitHTTP(context.Background(), "/healthz", 2*time.Minute)
	}
}

// waitRunning waits (bounded) until the process runs: one that exited
// during start-up is between restarts for a few seconds.
func (b *binary) waitRunning(timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for b.pid() == 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
}

func (b *binary) pid() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cmd == nil {
		return 0
	}
	return b.cmd.Process.Pid
}

// signal sends sig to the running process, marking its coming exit as
// expected (expect "kill"/"term"/"stop") or not (""), and returns the pid
// and the channel closed at exit.
func (b *binary) signal(sig syscall.Signal, expect string) (int, chan struct{}, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cmd == nil {
		return 0, nil, fmt.Errorf("%s is not running", b.name)
	}
	if expect != "" {
		b.expect = expect
	}
	pid := b.cmd.Process.Pid
	if err := syscall.Kill(pid, sig); err != nil {
		return pid, b.done, fmt.Errorf("signal %d to %s (pid %d): %w", int(sig), b.name, pid, err)
	}
	return pid, b.done, nil
}

// kill SIGKILLs the process and waits until it is gone.
func (b *binary) kill() (string, error) {
	pid, done, err := b.signal(syscall.SIGKILL, "kill")
	if err != nil {
		return "", err
	}
	_ = syscall.Kill(pid, syscall.SIGCONT) // a paused process dies at once either way
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		return "", fmt.Errorf("%s (pid %d) still there 10s after SIGKILL", b.name, pid)
	}
	if procState(pid) != 0 {
		return "", fmt.Errorf("%s: /proc/%d still exists after SIGKILL", b.name, pid)
	}
	return fmt.Sprintf("%s pid %d gone after SIGKILL", b.name, pid), nil
}

// term SIGTERMs the process and waits for it to exit, SIGKILLing it after
// grace (the checker then sees a non-zero status).
func (b *binary) term(grace time.Duration) (string, error) {
	pid, done, err := b.signal(syscall.SIGTERM, "term")
	if err != nil {
		return "", err
	}
	select {
	case <-done:
	case <-time.After(grace):
		b.dump(pid, fmt.Sprintf("still running %s after SIGTERM", grace))
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_, _, _ = b.signal(syscall.SIGKILL, "")
			<-done
		}
		return "", fmt.Errorf("%s (pid %d) did not exit within %s of SIGTERM; its goroutines are dumped in %s", b.name, pid, grace, b.logPath)
	}
	b.mu.Lock()
	last := b.exits[len(b.exits)-1]
	b.mu.Unlock()
	return fmt.Sprintf("%s pid %d exited after SIGTERM (%s)", b.name, pid, last.Status), nil
}

// retire stops the process for good (SIGTERM, then SIGKILL after grace).
func (b *binary) retire(grace time.Duration) error {
	b.mu.Lock()
	b.retired = true
	running := b.cmd != nil
	b.mu.Unlock()
	if !running {
		return nil
	}
	_, _ = b.resume()
	_, err := b.term(grace)
	return err
}

// pause stops the process with SIGSTOP and checks the kernel says so.
func (b *binary) pause() (string, error) {
	b.mu.Lock()
	b.paused = true
	b.mu.Unlock()
	pid, _, err := b.signal(syscall.SIGSTOP, "")
	if err != nil {
		return "", err
	}
	if err := waitState(pid, func(s byte) bool { return s == 'T' }, 5*time.Second); err != nil {
		return "", fmt.Errorf("%s: %w", b.name, err)
	}
	return fmt.Sprintf("%s pid %d in state T (stopped)", b.name, pid), nil
}

// resume sends SIGCONT and checks the process runs again.
func (b *binary) resume() (string, error) {
	pid, _, err := b.signal(syscall.SIGCONT, "")
	if err != nil {
		return "", err
	}
	if err := waitState(pid, func(s byte) bool { return s != 'T' && s != 't' }, 5*time.Second); err != nil {
		return "", fmt.Errorf("%s: %w", b.name, err)
	}
	b.mu.Lock()
	b.paused, b.lastAlive = false, time.Now()
	b.mu.Unlock()
	return fmt.Sprintf("%s pid %d running again", b.name, pid), nil
}

func waitState(pid int, ok func(byte) bool, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		s := procState(pid)
		if s != 0 && ok(s) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("pid %d in state %q after %s", pid, s, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitHTTP polls http://addr<path> until it answers 200, bounded; it
// gives up early if the process exits. /healthz marks the process healthy.
func (b *binary) waitHTTP(ctx context.Context, path string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	client := &http.Client{Timeout: 2 * time.Second}
	last := "no answer"
	for {
		b.mu.Lock()
		running := b.cmd != nil
		b.mu.Unlock()
		if running {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+b.addr+path, nil)
			res, err := client.Do(req)
			if err == nil {
				body, _ := io.ReadAll(io.LimitReader(res.Body, 512))
				res.Body.Close()
				if res.StatusCode == http.StatusOK {
					b.mu.Lock()
					b.healthy = true
					b.mu.Unlock()
					return nil
				}
				last = fmt.Sprintf("%s %s", res.Status, body)
			} else {
				last = err.Error()
			}
		} else {
			last = "not running"
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %s not 200 after %s (last: %s); log %s:\n%s", b.name, path, timeout, last, b.logPath, tailFile(b.logPath, 10))
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// lastLine is the last line of a log (a binary's exit error), cut short.
func lastLine(path string) string {
	l := tailFile(path, 1)
	if len(l) > 300 {
		l = l[:300] + "…"
	}
	return l
}

func tailFile(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(" + err.Error() + ")"
	}
	return tailLines(string(b), n)
}

// Exits returns the process's recorded exits and hangs.
func (b *binary) Exits() ([]checker.Exit, []checker.Hang) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]checker.Exit(nil), b.exits...), append([]checker.Hang(nil), b.hangs...)
}

// dump makes a Go process print every goroutine's stack into its log
// (SIGQUIT; it exits with status 2), after a marker line the log scan
// uses to tell the dump from a panic.
func (b *binary) dump(pid int, why string) {
	if f, err := os.OpenFile(b.logPath, os.O_APPEND|os.O_WRONLY, 0o644); err == nil {
		fmt.Fprintf(f, "%s %s pid %d at %s: %s\n", dumpMarker, b.name, pid, time.Now().UTC().Format(time.RFC3339Nano), why)
		f.Close()
	}
	_ = syscall.Kill(pid, syscall.SIGCONT)
	_ = syscall.Kill(pid, syscall.SIGQUIT)
}

const dumpMarker = "=== chaos: SIGQUIT (goroutine dump follows) of"

// hangAfter is how long a running, not paused process may go without
// answering /healthz. The slowest legitimate start (a projector waiting for
// Elasticsearch, 30 s per read model) stays under it.
var hangAfter = 90 * time.Second

// startupWindow is how long after a start an exit still counts as a
// start-up failure.
const startupWindow = 30 * time.Second

// watch probes /healthz of every running binary every 2 s until ctx
// ends. A process alive but silent for hangAfter is hung: the watchdog
// records it, dumps its goroutines (SIGQUIT) and lets the supervisor start
// it again, so the run goes on.
func watch(ctx context.Context, bins map[string]*binary) {
	client := &http.Client{Timeout: time.Second}
	t := time.NewTicker(min(2*time.Second, hangAfter/4))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, b := range bins {
			b.mu.Lock()
			pid, paused, since := 0, b.paused, b.lastAlive
			if b.cmd != nil && b.expect == "" {
				pid = b.cmd.Process.Pid
			}
			b.mu.Unlock()
			if pid == 0 || paused {
				continue
			}
			res, err := client.Get("http://" + b.addr + "/healthz")
			if err == nil {
				res.Body.Close()
			}
			b.mu.Lock()
			switch {
			case b.cmd == nil || b.cmd.Process.Pid != pid || b.paused:
			case err == nil && res.StatusCode == http.StatusOK:
				b.lastAlive, b.healthy = time.Now(), true
			case time.Since(since) > hangAfter:
				msg := fmt.Sprintf("pid %d alive but /healthz unanswered for %s (last: %v); goroutines dumped in %s", pid,
					time.Since(since).Round(time.Second), errOrStatus(err, res), b.logPath)
				b.hangs = append(b.hangs, checker.Hang{Process: b.name, At: time.Now(), Msg: msg})
				b.expect = "quit"
				b.mu.Unlock()
				b.log.Warn("process hung; dumping its goroutines and restarting it", "process", b.name, "detail", msg)
				b.dump(pid, "hung: /healthz unanswered")
				continue
			}
			b.mu.Unlock()
		}
	}
}

func errOrStatus(err error, res *http.Response) string {
	if err != nil {
		return err.Error()
	}
	return res.Status
}
