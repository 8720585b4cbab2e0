// Package binary builds the project's commands and runs them as child
// processes, for end-to-end tests and the benchmark harness alike: build
// with `go build`, start with a log file, wait for /readyz, stop with
// SIGTERM and a bounded grace. A child dies with its parent (Pdeathsig),
// so an interrupted run leaves no binaries behind.
package binary

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"cqrsflow/internal/testenv"
)

// Build runs `go build -o outDir/ pkgs...` in dir ("" = the current
// directory, which must lie inside the module) and names the failure with
// the compiler's output.
func Build(ctx context.Context, dir, outDir string, pkgs ...string) error {
	if len(pkgs) == 0 {
		return errors.New("binary.Build: no package to build")
	}
	args := append([]string{"build", "-o", outDir + string(filepath.Separator)}, pkgs...)
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %w\n%s", strings.Join(pkgs, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// Spec says how to start one binary.
type Spec struct {
	Name    string   // for messages: "api", "projector-1"
	Bin     string   // path of the executable
	Args    []string // command-line arguments
	Env     []string // added to the inherited environment; later entries win
	Addr    string   // host:port of its HTTP server (/readyz, /metrics); may be empty
	LogPath string   // stdout and stderr go here
}

// Process is a started binary.
type Process struct {
	Name    string
	Addr    string
	LogPath string
	cmd     *exec.Cmd
	done    chan struct{}
	waitErr error
}

// Start starts the binary of s.
func Start(s Spec) (*Process, error) {
	logf, err := os.Create(s.LogPath)
	if err != nil {
		return nil, fmt.Errorf("creating %s log: %w", s.Name, err)
	}
	cmd := exec.Command(s.Bin, s.Args...)
	cmd.Env = append(os.Environ(), s.Env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("starting %s: %w", s.Name, err)
	}
	p := &Process{Name: s.Name, Addr: s.Addr, LogPath: s.LogPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	return p, nil
}

// Pid is the process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Exited reports whether the process has ended, and how.
func (p *Process) Exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.waitErr
	default:
		return false, nil
	}
}

// Until waits like testenv.Until for cond, and fails at once, with the
// end of the log, if the process exits meanwhile.
func (p *Process) Until(ctx context.Context, timeout time.Duration, what string, cond func() (bool, error)) error {
	err := testenv.Until(ctx, timeout, 200*time.Millisecond, what, func() (bool, error) {
		if ok, err := p.Exited(); ok {
			return false, testenv.Permanent(fmt.Errorf("%s exited (%v)", p.Name, err))
		}
		return cond()
	})
	if err != nil {
		return fmt.Errorf("%w; last log lines:\n%s", err, Tail(p.LogPath, 15))
	}
	return nil
}

// WaitReady waits until http://Addr/readyz answers 200.
func (p *Process) WaitReady(ctx context.Context, timeout time.Duration) error {
	url := "http://" + p.Addr + "/readyz"
	// A server that accepts but never answers must not outlast the timeout.
	deadline := time.Now().Add(timeout)
	return p.Until(ctx, timeout, p.Name+" ready", func() (bool, error) {
		rctx, cancel := context.WithDeadline(ctx, deadline)
		defer cancel()
		req, err := http.NewRequestWithContext(rctx, http.MethodGet, url, nil)
		if err != nil {
			return false, testenv.Permanent(err)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			return false, err
		}
		body, _ := io.ReadAll(io.LimitReader(res.Body, 512))
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			return false, fmt.Errorf("last answer: %s %s", res.Status, bytes.TrimSpace(body))
		}
		return true, nil
	})
}

// Stop sends SIGTERM, waits up to grace, then SIGKILLs; a process that
// needed the SIGKILL is an error.
func (p *Process) Stop(grace time.Duration) error {
	if ok, _ := p.Exited(); ok {
		return nil
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.done:
		return nil
	case <-t.C:
		_ = p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("%s did not exit within %s of SIGTERM; killed", p.Name, grace)
	}
}

// Tail returns the last n lines of a file, for error messages.
func Tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
