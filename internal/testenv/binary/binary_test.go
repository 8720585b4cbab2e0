package binary

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"cqrsflow/internal/testenv"
)

var (
	buildOnce sync.Once
	serverBin string
	buildErr  error
)

// server builds testdata/server once.
func server(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "binary-test-")
		if err != nil {
			buildErr = err
			return
		}
		buildErr = Build(context.Background(), "", dir, "./testdata/server")
		serverBin = filepath.Join(dir, "server")
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return serverBin
}

func start(t *testing.T, env ...string) *Process {
	t.Helper()
	addr := testenv.FreeAddr(t)
	p, err := Start(Spec{Name: "server", Bin: server(t), Env: append(env, "ADDR="+addr), Addr: addr,
		LogPath: filepath.Join(t.TempDir(), "server.log")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Stop(time.Second) })
	return p
}

func TestBuildReportsCompilerOutput(t *testing.T) {
	err := Build(context.Background(), "", t.TempDir(), "./testdata/nosuchpackage")
	if err == nil || !strings.Contains(err.Error(), "nosuchpackage") {
		t.Errorf("building a missing package: err = %v, want the go tool's message", err)
	}
	if err := Build(context.Background(), "", t.TempDir()); err == nil {
		t.Error("no package: want an error")
	}
}

func TestWaitReadyThenStop(t *testing.T) {
	p := start(t, "READY_AFTER=300ms")
	ctx := context.Background()
	begin := time.Now()
	if err := p.WaitReady(ctx, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(begin); d < 250*time.Millisecond {
		t.Errorf("ready after %v, before the server said so (300ms)", d)
	}
	if ok, _ := p.Exited(); ok || p.Pid() <= 0 {
		t.Fatalf("running server: exited %v, pid %d", ok, p.Pid())
	}
	if err := p.Stop(10 * time.Second); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if ok, _ := p.Exited(); !ok {
		t.Error("not exited after Stop")
	}
	if log := Tail(p.LogPath, 1); log != "terminated" {
		t.Errorf("last log line %q, want the server's SIGTERM message", log)
	}
}

func TestWaitReadyFailsFastWhenTheProcessExits(t *testing.T) {
	p := start(t, "READY_AFTER=1h", "EXIT_AFTER=200ms")
	begin := time.Now()
	err := p.WaitReady(context.Background(), time.Minute)
	if err == nil || !strings.Contains(err.Error(), "server exited") || !strings.Contains(err.Error(), "giving up") {
		t.Fatalf("err = %v, want the exit and the log's last lines", err)
	}
	if d := time.Since(begin); d > 30*time.Second {
		t.Errorf("took %v: the exit should end the wait at once", d)
	}
}

func TestWaitReadyTimesOutWithTheLastAnswer(t *testing.T) {
	p := start(t, "READY_AFTER=1h")
	err := p.WaitReady(context.Background(), time.Second)
	if err == nil || !strings.Contains(err.Error(), "503") || !strings.Contains(err.Error(), "warming up") {
		t.Fatalf("err = %v, want the last 503 answer", err)
	}
}

func TestStopKillsAfterGrace(t *testing.T) {
	p := start(t, "IGNORE_TERM=1")
	if err := p.WaitReady(context.Background(), 20*time.Second); err != nil {
		t.Fatal(err)
	}
	err := p.Stop(300 * time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "killed") {
		t.Errorf("Stop of a process ignoring SIGTERM: err = %v, want killed", err)
	}
	if ok, _ := p.Exited(); !ok {
		t.Error("not exited after the kill")
	}
}

func TestTail(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	if err := os.WriteFile(path, []byte("a\nb\nc\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := Tail(path, 2); got != "b\nc" {
		t.Errorf("Tail = %q", got)
	}
	if got := Tail(path, 10); got != "a\nb\nc" {
		t.Errorf("Tail of a short file = %q", got)
	}
	if got := Tail(filepath.Join(t.TempDir(), "none"), 2); !strings.HasPrefix(got, "(no log") {
		t.Errorf("Tail of a missing file = %q", got)
	}
}
