package procs

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Group is a named set of processes whose CPU time is summed: one
// cqrsflow binary, or a stack service with its children (PostgreSQL's
// backends are children of the postmaster).
type Group struct {
	Name     string
	Pid      int
	Children bool
}

// Sample is the CPU seconds of each process of the groups at one instant,
// and of the whole machine (busy = not idle, not waiting for I/O).
type Sample struct {
	At          time.Time
	Procs       map[int]ProcCPU // by pid
	MachineBusy float64
}

// ProcCPU is one process's CPU seconds so far and the group it counts for.
type ProcCPU struct {
	Group string
	Secs  float64
}

// OtherCPU names the machine's busy time not accounted to any group: other
// processes competing for the same cores.
const OtherCPU = "other processes"

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
	return float64(busy) / ClockTicks, nil
}

// SampleCPU reads the CPU time of every process of every group. split,
// if not nil, names the group of some children (PostgreSQL backends by the
// client they serve); the other children count for their parent's group.
func SampleCPU(groups []Group, split map[int]string) Sample {
	s := Sample{At: time.Now(), Procs: map[int]ProcCPU{}}
	s.MachineBusy, _ = machineBusy()
	var children map[int][]int
	for _, g := range groups {
		if g.Pid <= 0 {
			continue
		}
		st, err := ReadStat(g.Pid)
		if err != nil {
			continue
		}
		s.Procs[g.Pid] = ProcCPU{Group: g.Name, Secs: float64(st.CPUTicks) / ClockTicks}
		if !g.Children {
			continue
		}
		if children == nil {
			children = childrenByParent()
		}
		for _, c := range children[g.Pid] {
			cs, err := ReadStat(c)
			if err != nil {
				continue
			}
			name, ok := split[c]
			if !ok {
				name = g.Name
			}
			s.Procs[c] = ProcCPU{Group: name, Secs: float64(cs.CPUTicks) / ClockTicks}
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
		st, err := ReadStat(pid)
		if err != nil {
			continue
		}
		out[st.PPid] = append(out[st.PPid], pid)
	}
	return out
}

// CoresUsed is the average number of cores each group used between a and
// b, summed per process: a process born in between counts all its time, one
// that ended in between loses its time in the window (never negative).
func CoresUsed(a, b Sample) map[string]float64 {
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
		out[OtherCPU] = max(0, (b.MachineBusy-a.MachineBusy)/wall-accounted)
	}
	return out
}

// StackGroups finds the local stack's processes from its state dir:
// PostgreSQL's postmaster (with its backends), Kafka and Elasticsearch.
func StackGroups(stateDir string) []Group {
	readPid := func(path string) int {
		b, err := os.ReadFile(path)
		if err != nil {
			return 0
		}
		line, _, _ := strings.Cut(string(b), "\n")
		pid, _ := strconv.Atoi(strings.TrimSpace(line))
		return pid
	}
	return []Group{
		{Name: "postgresql (rest)", Pid: readPid(filepath.Join(stateDir, "postgres", "data", "postmaster.pid")), Children: true},
		{Name: "kafka", Pid: readPid(filepath.Join(stateDir, "kafka", "kafka.pid"))},
		{Name: "elasticsearch", Pid: readPid(filepath.Join(stateDir, "elasticsearch", "elasticsearch.pid"))},
	}
}
