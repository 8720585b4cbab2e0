package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// The chaos stack's ports, all from one base below the kernel's ephemeral
// range, so a restarted process finds its port free again.
const (
	offPostgres   = 0
	offKafka      = 1
	offController = 2
	offES         = 3
	offTransport  = 4
	offSASL       = 5  // the SASL_SSL listener kafka.sh configures (the chaos listeners replace it)
	offListeners  = 10 // Kafka listeners, one per component that talks to Kafka
	offHTTP       = 20 // the binaries' HTTP ports
	offProxies    = 30 // the proxies of the component→service links
	portSpan      = 50
)

// stack is the chaos run's own PostgreSQL, Kafka and Elasticsearch,
// started by the project's scripts (deploy/local) with their own state dir
// and ports, so the nemesis can crash them without touching the shared
// stack.
type stack struct {
	repo    string
	dir     string
	base    int
	logPath string
	// kafkaExtra is the KAFKA_EXTRA_PROPERTIES file: one listener per
	// component, advertised as that component's proxy.
	kafkaExtra string
	log        *slog.Logger
	mu         sync.Mutex // one script at a time per service is enough; serialises the log file
}

func (s *stack) port(off int) int    { return s.base + off }
func (s *stack) addr(off int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port(off))) }

// PostgresURL is the direct URL of the chaos PostgreSQL (the harness's own
// connections; the binaries go through proxies).
func (s *stack) PostgresURL(port int) string {
	return fmt.Sprintf("postgres://cqrsflow:cqrsflow@127.0.0.1:%d/cqrsflow?sslmode=disable", port)
}

func (s *stack) KafkaAddr() string { return s.addr(offKafka) }
func (s *stack) ESURL() string     { return "http://" + s.addr(offES) }

// env is the scripts' environment: the caller's, with every stack setting
// replaced by the chaos stack's, so nothing can point them at the shared
// stack.
func (s *stack) env() []string {
	drop := []string{"CQRSFLOW_STATE_DIR=", "PG_PORT=", "KAFKA_PORT=", "KAFKA_CONTROLLER_PORT=", "KAFKA_SASL_PORT=", "ES_PORT=", "ES_TRANSPORT_PORT=",
		"KAFKA_EXTRA_PROPERTIES=", "PG_WAIT=", "KAFKA_WAIT=", "ES_WAIT="}
	var env []string
outer:
	for _, kv := range os.Environ() {
		for _, d := range drop {
			if strings.HasPrefix(kv, d) {
				continue outer
			}
		}
		env = append(env, kv)
	}
	return append(env, "CQRSFLOW_STATE_DIR="+s.dir,
		"PG_PORT="+strconv.Itoa(s.port(offPostgres)),
		"KAFKA_PORT="+strconv.Itoa(s.port(offKafka)), "KAFKA_CONTROLLER_PORT="+strconv.Itoa(s.port(offController)),
		"KAFKA_SASL_PORT="+strconv.Itoa(s.port(offSASL)),
		"ES_PORT="+strconv.Itoa(s.port(offES)), "ES_TRANSPORT_PORT="+strconv.Itoa(s.port(offTransport)),
		"KAFKA_EXTRA_PROPERTIES="+s.kafkaExtra,
		// A JVM restarted while the other one restarts too, on a busy
		// machine, can take minutes: the scripts' waits stay bounded, but
		// longer than for `make up`.
		"PG_WAIT=120", "KAFKA_WAIT=240", "ES_WAIT=300")
}

// script runs deploy/local/<name> with args, its output appended to the
// stack log; on failure the error carries the output's tail.
func (s *stack) script(ctx context.Context, timeout time.Duration, name string, args ...string) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(s.repo, "deploy", "local", name), args...)
	cmd.Env = s.env()
	cmd.Dir = s.repo
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = 5 * time.Second
	start := time.Now()
	err := cmd.Run()
	s.mu.Lock()
	if f, ferr := os.OpenFile(s.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644); ferr == nil {
		fmt.Fprintf(f, "=== %s %s %v (%s, err %v)\n%s", time.Now().Format(time.RFC3339), name, args, time.Since(start).Round(time.Millisecond), err, out.Bytes())
		f.Close()
	}
	s.mu.Unlock()
	if err != nil {
		return fmt.Errorf("deploy/local/%s %s: %w (log %s)\n%s", name, strings.Join(args, " "), err, s.logPath, tailLines(out.String(), 12))
	}
	return nil
}

func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

var services = []struct{ name, script string }{{"postgres", "pg.sh"}, {"kafka", "kafka.sh"}, {"elasticsearch", "es.sh"}}

// startAll starts the three services at once (the JVMs take the longest).
func (s *stack) startAll(ctx context.Context) error {
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for _, svc := range services {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.script(ctx, 6*time.Minute, svc.script, "start"); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("%s did not start: %w", svc.name, err))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("the chaos stack (state dir %s) did not start; the scripts install what is missing like `make up` does:\n%w", s.dir, err)
	}
	return nil
}

// ensureUp starts every service that is not running (the scripts reuse
// a running one) and names the ones it had to start: after the faults
// are healed that list must be empty.
func (s *stack) ensureUp(ctx context.Context) ([]string, error) {
	var started []string
	var errs []error
	for _, svc := range services {
		if len(s.pids(svc.name)) > 0 {
			continue
		}
		started = append(started, svc.name)
		errs = append(errs, s.script(ctx, 6*time.Minute, svc.script, "start"))
	}
	return started, errors.Join(errs...)
}

// stopAll stops the services (each bounded by its script), also after ctx
// ended.
func (s *stack) stopAll() error {
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for _, svc := range services {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// A service still paused by SIGSTOP would ignore SIGTERM.
			for _, pid := range s.pids(svc.name) {
				_ = syscall.Kill(pid, syscall.SIGCONT)
			}
			if err := s.script(context.Background(), 3*time.Minute, svc.script, "stop"); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// running reports whether any service of the chaos state dir runs.
func (s *stack) running() bool {
	for _, svc := range services {
		if len(s.pids(svc.name)) > 0 {
			return true
		}
	}
	return false
}

// pids are the live processes of a service: the broker or node JVM, or the
// postmaster followed by its children.
func (s *stack) pids(service string) []int {
	var file, marker string
	switch service {
	case "postgres":
		file, marker = filepath.Join(s.dir, "postgres", "data", "postmaster.pid"), filepath.Join(s.dir, "postgres", "data")
	case "kafka":
		file, marker = filepath.Join(s.dir, "kafka", "kafka.pid"), filepath.Join(s.dir, "kafka", "server.properties")
	case "elasticsearch":
		file, marker = filepath.Join(s.dir, "elasticsearch", "elasticsearch.pid"), filepath.Join(s.dir, "elasticsearch", "home")
	}
	pid, err := readPid(file)
	if err != nil || !cmdlineHas(pid, marker) {
		return nil
	}
	out := []int{pid}
	if service == "postgres" {
		out = append(out, children(pid)...)
	}
	return out
}

func readPid(file string) (int, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	return strconv.Atoi(strings.TrimSpace(line))
}

// cmdlineHas guards against a recycled pid: the process must be alive and
// its command line must name our state dir.
func cmdlineHas(pid int, marker string) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	return bytes.Contains(bytes.ReplaceAll(b, []byte{0}, []byte{' '}), []byte(marker)) && procState(pid) != 'Z'
}

// children lists the processes whose parent is pid.
func children(pid int) []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ppid, _ := procPPid(p); ppid == pid {
			out = append(out, p)
		}
	}
	return out
}

// procStat returns the fields after the command name of /proc/<pid>/stat.
func procStat(pid int) []string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil
	}
	return strings.Fields(string(b[i+1:]))
}

// procState is the process's state letter (R, S, T stopped, Z zombie), 0
// if the process is gone.
func procState(pid int) byte {
	f := procStat(pid)
	if len(f) < 1 || f[0] == "" {
		return 0
	}
	return f[0][0]
}

func procPPid(pid int) (int, error) {
	f := procStat(pid)
	if len(f) < 2 {
		return 0, errors.New("no stat")
	}
	return strconv.Atoi(f[1])
}

// writeKafkaExtra writes the listener config: the broker keeps its own
// PLAINTEXT listener (the harness, the scripts' readiness check) and gets
// one listener per component, advertised as that component's proxy, so
// every connection a component makes to the broker goes through its proxy.
func (s *stack) writeKafkaExtra(components []string, proxyPort func(component string) int) error {
	listeners := []string{"PLAINTEXT://" + s.addr(offKafka), "CONTROLLER://" + s.addr(offController)}
	advertised := []string{"PLAINTEXT://" + s.addr(offKafka)}
	protocols := []string{"PLAINTEXT:PLAINTEXT", "CONTROLLER:PLAINTEXT"}
	for i, c := range components {
		name := listenerName(c)
		listeners = append(listeners, fmt.Sprintf("%s://127.0.0.1:%d", name, s.port(offListeners+i)))
		advertised = append(advertised, fmt.Sprintf("%s://127.0.0.1:%d", name, proxyPort(c)))
		protocols = append(protocols, name+":PLAINTEXT")
	}
	body := fmt.Sprintf("# Written by the chaos harness: one listener per component, advertised as its proxy.\nlisteners=%s\nadvertised.listeners=%s\nlistener.security.protocol.map=%s\n",
		strings.Join(listeners, ","), strings.Join(advertised, ","), strings.Join(protocols, ","))
	if err := os.MkdirAll(s.dir, 0o755); err != nil {
		return err
	}
	s.kafkaExtra = filepath.Join(s.dir, "kafka-chaos-listeners.properties")
	return os.WriteFile(s.kafkaExtra, []byte(body), 0o644)
}

// listenerName turns "projector-2" into "PROJECTOR2".
func listenerName(component string) string {
	return strings.ToUpper(strings.ReplaceAll(component, "-", ""))
}

// portsFree fails naming the first port of the chaos stack that something
// else listens on.
func (s *stack) portsFree() error {
	for off := range portSpan {
		l, err := net.Listen("tcp", s.addr(off))
		if err != nil {
			return fmt.Errorf("port %d (chaos port base %d + %d) is in use: stop what listens there or set CHAOS_PORT_BASE", s.port(off), s.base, off)
		}
		l.Close()
	}
	return nil
}
