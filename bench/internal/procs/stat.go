// Package procs reads what Linux's /proc says about processes — CPU time,
// resident memory, parent — and turns two samples into cores used per
// named group of processes (a cqrsflow binary, a stack service with its
// children, everything else on the machine).
package procs

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// ClockTicks is USER_HZ, the unit of utime/stime in /proc/<pid>/stat; it
// is 100 on every Linux architecture Go supports.
const ClockTicks = 100

// Stat is the part of /proc/<pid>/stat the bench uses.
type Stat struct {
	PPid     int
	CPUTicks int64 // utime + stime
}

// ParseStat parses one /proc/<pid>/stat line. The command name (field 2)
// may contain spaces and parentheses, so fields are counted from the last ')'.
func ParseStat(line string) (Stat, error) {
	i := strings.LastIndexByte(line, ')')
	if i < 0 {
		return Stat{}, fmt.Errorf("malformed stat line")
	}
	f := strings.Fields(line[i+1:])
	// f[0] is field 3 (state); ppid is field 4, utime 14, stime 15.
	if len(f) < 13 {
		return Stat{}, fmt.Errorf("short stat line")
	}
	ppid, err1 := strconv.Atoi(f[1])
	ut, err2 := strconv.ParseInt(f[11], 10, 64)
	st, err3 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2, err3); err != nil {
		return Stat{}, fmt.Errorf("parsing stat line: %w", err)
	}
	return Stat{PPid: ppid, CPUTicks: ut + st}, nil
}

// ReadStat reads /proc/<pid>/stat.
func ReadStat(pid int) (Stat, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return Stat{}, err
	}
	return ParseStat(string(b))
}

// Mem is what /proc/<pid>/status says about a process's memory.
type Mem struct {
	HWMKiB int64 // VmHWM: peak resident set
	RSSKiB int64 // VmRSS: resident set now
}

// ReadMem parses VmHWM and VmRSS of /proc/<pid>/status.
func ReadMem(pid int) (Mem, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return Mem{}, fmt.Errorf("reading status of pid %d: %w", pid, err)
	}
	defer f.Close()
	return parseStatusMem(f)
}

var errNoVmHWM = errors.New("no VmHWM in /proc status")

func parseStatusMem(r io.Reader) (Mem, error) {
	var m Mem
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

// LoadAvg is the 1-minute load average from /proc/loadavg ("?" if unknown).
func LoadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return "?"
	}
	return f[0]
}
