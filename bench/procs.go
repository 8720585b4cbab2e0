package main

// Child processes of the pipeline part (the real cqrsflow binaries) and what
// /proc says about them and the stack's processes: CPU time and peak RSS.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// proc is one started binary.
type proc struct {
	Name    string // "api", "outbox-relay", "projector-1"
	Addr    string // host:port of its HTTP server (/readyz, /metrics)
	LogPath string
	cmd     *exec.Cmd
	done    chan struct{}
	waitErr error
}

// startProc starts bin with args and env (added to the inherited
// environment, later entries winning), output to logPath. The child is
// killed if the bench process dies (Pdeathsig).
func startProc(name, bin string, args, env []string, addr, logPath string) (*proc, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("creating %s log: %w", name, err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &proc{Name: name, Addr: addr, LogPath: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	return p, nil
}

// Pid is the child's process id.
func (p *proc) Pid() int { return p.cmd.Process.Pid }

// exited reports whether the process has ended, and how.
func (p *proc) exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.waitErr
	default:
		return false, nil
	}
}

// waitReady polls http://Addr/readyz until it answers 200, the process
// exits, or ctx ends.
func (p *proc) waitReady(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	url := "http://" + p.Addr + "/readyz"
	var last string
	for {
		if ok, err := p.exited(); ok {
			return fmt.Errorf("%s exited before it was ready (%v); last log lines:\n%s", p.Name, err, tail(p.LogPath, 15))
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		res, err := http.DefaultClient.Do(req)
		if err == nil {
			body, _ := io.ReadAll(io.LimitReader(res.Body, 512))
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Sprintf("%s %s", res.Status, bytes.TrimSpace(body))
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not ready after %s (last answer: %s); last log lines:\n%s", p.Name, timeout, last, tail(p.LogPath, 15))
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// stop sends SIGTERM, waits up to grace, then SIGKILLs.
func (p *proc) stop(grace time.Duration) error {
	if ok, _ := p.exited(); ok {
		return nil
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("%s did not exit within %s of SIGTERM; killed", p.Name, grace)
	}
}

// tail returns the last n lines of a file (for error messages).
func tail(path string, n int) string {
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

// freeAddr returns a free 127.0.0.1 port (listen on :0, close).
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// memInfo is what /proc/<pid>/status says about a process's memory.
type memInfo struct {
	HWMKiB int64 // VmHWM: peak resident set
	RSSKiB int64 // VmRSS: resident set now
}

// readMem parses VmHWM and VmRSS of /proc/<pid>/status.
func readMem(pid int) (memInfo, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return memInfo{}, fmt.Errorf("reading status of pid %d: %w", pid, err)
	}
	defer f.Close()
	return parseStatusMem(f)
}

var errNoVmHWM = errors.New("no VmHWM in /proc status")

func parseStatusMem(r io.Reader) (memInfo, error) {
	var m memInfo
	var seen bool
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 {
			continue
		}
		n, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			continue
		}
		switch f[0] {
		case "VmHWM:":
			m.HWMKiB, seen = n, true
		case "VmRSS:":
			m.RSSKiB = n
		}
	}
	if !seen {
		return m, errNoVmHWM
	}
	return m, nil
}

// clockTicks is USER_HZ, the unit of utime/stime in /proc/<pid>/stat; it
// is 100 on every Linux architecture Go supports.
const clockTicks = 100

// procStat is the part of /proc/<pid>/stat the bench uses.
type procStat struct {
	PPid     int
	CPUTicks int64 // utime + stime
}

// parseStat parses one /proc/<pid>/stat line. The command name (field 2)
// may contain spaces and parentheses, so fields are counted from the last ')'.
func parseStat(line string) (procStat, error) {
	i := strings.LastIndexByte(line, ')')
	if i < 0 {
		return procStat{}, fmt.Errorf("malformed stat line")
	}
	f := strings.Fields(line[i+1:])
	// f[0] is field 3 (state); ppid is field 4, utime 14, stime 15.
	if len(f) < 13 {
		return procStat{}, fmt.Errorf("short stat line")
	}
	ppid, err1 := strconv.Atoi(f[1])
	ut, err2 := strconv.ParseInt(f[11], 10, 64)
	st, err3 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2, err3); err != nil {
		return procStat{}, fmt.Errorf("parsing stat line: %w", err)
	}
	return procStat{PPid: ppid, CPUTicks: ut + st}, nil
}

func readStat(pid int) (procStat, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procStat{}, err
	}
	return parseStat(string(b))
}

// cpuGroup is a named set of processes whose CPU time is summed: one
// cqrsflow binary, or a stack service with its children (PostgreSQL's
// backends are children of the postmaster).
type cpuGroup struct {
	Name     string
	Pid      int
	Children bool
}

// cpuSample is the CPU seconds of each group at one instant, and of the
// whole machine (busy = not idle, not waiting for I/O).
type cpuSample struct {
	At          time.Time
	Procs       map[int]procCPU // by pid
	MachineBusy float64
}

// procCPU is one process's CPU seconds so far and the group it counts for.
type procCPU struct {
	Group string
	Secs  float64
}

// otherCPU names the machine's busy time not accounted to any group: other
// processes competing for the same cores.
const otherCPU = "other processes"

// machineBusy reads the busy CPU seconds of all cores from /proc/stat.
func machineBusy() (float64, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	return parseProcStatBusy(string(b))
}

// parseProcStatBusy sums the "cpu" line's fields except idle and iowait.
func parseProcStatBusy(stat string) (float64, error) {
	line, _, _ := strings.Cut(stat, "\n")
	f := strings.Fields(line)
	if len(f) < 6 || f[0] != "cpu" {
		return 0, fmt.Errorf("no aggregate cpu line in /proc/stat")
	}
	var busy int64
	for i, v := range f[1:] {
		if i >= 8 { // guest and guest_nice are already in user and nice
			break
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("parsing /proc/stat: %w", err)
		}
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		busy += n
	}
	return float64(busy) / clockTicks, nil
}

// sampleCPU reads the CPU time of every process of every group. split,
// if not nil, names the group of some children (PostgreSQL backends by the
// client they serve); the other children count for their parent's group.
func sampleCPU(groups []cpuGroup, split map[int]string) cpuSample {
	s := cpuSample{At: time.Now(), Procs: map[int]procCPU{}}
	s.MachineBusy, _ = machineBusy()
	var children map[int][]int
	for _, g := range groups {
		if g.Pid <= 0 {
			continue
		}
		st, err := readStat(g.Pid)
		if err != nil {
			continue
		}
		s.Procs[g.Pid] = procCPU{Group: g.Name, Secs: float64(st.CPUTicks) / clockTicks}
		if !g.Children {
			continue
		}
		if children == nil {
			children = childrenByParent()
		}
		for _, c := range children[g.Pid] {
			cs, err := readStat(c)
			if err != nil {
				continue
			}
			name, ok := split[c]
			if !ok {
				name = g.Name
			}
			s.Procs[c] = procCPU{Group: name, Secs: float64(cs.CPUTicks) / clockTicks}
		}
	}
	return s
}

// childrenByParent maps every parent pid to its direct children.
func childrenByParent() map[int][]int {
	out := map[int][]int{}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return out
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := readStat(pid)
		if err != nil {
			continue
		}
		out[st.PPid] = append(out[st.PPid], pid)
	}
	return out
}

// coresUsed is the average number of cores each group used between a and
// b, summed per process: a process born in between counts all its time, one
// that ended in between loses its time in the window (never negative).
func coresUsed(a, b cpuSample) map[string]float64 {
	wall := b.At.Sub(a.At).Seconds()
	out := map[string]float64{}
	if wall <= 0 {
		return out
	}
	for _, pa := range a.Procs {
		out[pa.Group] += 0 // keep a group that vanished as a column
	}
	var accounted float64
	for pid, pb := range b.Procs {
		d := pb.Secs
		if pa, ok := a.Procs[pid]; ok && pa.Secs <= pb.Secs {
			d = pb.Secs - pa.Secs
		}
		out[pb.Group] += d / wall
		accounted += d / wall
	}
	if a.MachineBusy > 0 && b.MachineBusy > 0 {
		out[otherCPU] = max(0, (b.MachineBusy-a.MachineBusy)/wall-accounted)
	}
	return out
}

// stackGroups finds the local stack's processes from its state dir:
// PostgreSQL's postmaster (with its backends), Kafka and Elasticsearch.
func stackGroups(stateDir string) []cpuGroup {
	readPid := func(path string) int {
		b, err := os.ReadFile(path)
		if err != nil {
			return 0
		}
		line, _, _ := strings.Cut(string(b), "\n")
		pid, _ := strconv.Atoi(strings.TrimSpace(line))
		return pid
	}
	return []cpuGroup{
		{Name: "postgresql (rest)", Pid: readPid(filepath.Join(stateDir, "postgres", "data", "postmaster.pid")), Children: true},
		{Name: "kafka", Pid: readPid(filepath.Join(stateDir, "kafka", "kafka.pid"))},
		{Name: "elasticsearch", Pid: readPid(filepath.Join(stateDir, "elasticsearch", "elasticsearch.pid"))},
	}
}
