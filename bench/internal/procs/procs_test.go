package procs

import (
	"errors"
	"math"
	"os"
	"strings"
	"testing"
	"time"
)

func TestParseStat(t *testing.T) {
	// The command name may hold spaces and parentheses.
	line := "4242 (my (odd) proc) S 17 4242 4242 0 -1 4194304 100 0 0 0 250 50 0 0 20 0 9 0 100 0 0\n"
	st, err := ParseStat(line)
	if err != nil {
		t.Fatal(err)
	}
	if st.PPid != 17 || st.CPUTicks != 300 {
		t.Errorf("ParseStat = %+v, want ppid 17, 300 ticks", st)
	}
	for _, bad := range []string{"", "1 (x) S 1 2", "1 (x) S a b c d e f g h i j k l m"} {
		if _, err := ParseStat(bad); err == nil {
			t.Errorf("ParseStat(%q): want an error", bad)
		}
	}
	// Our own process parses, and burns CPU over time.
	self, err := ReadStat(os.Getpid())
	if err != nil || self.PPid != os.Getppid() {
		t.Errorf("ReadStat(self) = %+v, %v; want ppid %d", self, err, os.Getppid())
	}
}

func TestParseStatusMem(t *testing.T) {
	m, err := parseStatusMem(strings.NewReader("Name:\tapi\nVmPeak:\t 900 kB\nVmHWM:\t   51200 kB\nVmRSS:\t   40960 kB\n"))
	if err != nil || m.HWMKiB != 51200 || m.RSSKiB != 40960 {
		t.Errorf("parseStatusMem = %+v, %v", m, err)
	}
	if _, err := parseStatusMem(strings.NewReader("Name:\tkthread\n")); !errors.Is(err, errNoVmHWM) {
		t.Errorf("no VmHWM: err = %v", err)
	}
	self, err := ReadMem(os.Getpid())
	if err != nil || self.HWMKiB <= 0 || self.HWMKiB < self.RSSKiB {
		t.Errorf("ReadMem(self) = %+v, %v; want HWM > 0 and ≥ RSS", self, err)
	}
}

func TestCoresUsed(t *testing.T) {
	t0 := time.Unix(100, 0)
	a := Sample{At: t0, Procs: map[int]ProcCPU{
		1: {"api", 1}, 2: {"kafka", 5}, 3: {"postgresql (rest)", 4}, 4: {"pg backends of api", 2}, 9: {"gone", 1},
	}}
	b := Sample{At: t0.Add(10 * time.Second), Procs: map[int]ProcCPU{
		1: {"api", 6}, 2: {"kafka", 7}, 4: {"pg backends of api", 3}, // pid 3 exited
		5: {"postgresql (rest)", 1}, // born in between
		6: {"new", 3},
	}}
	got := CoresUsed(a, b)
	want := map[string]float64{"api": 0.5, "kafka": 0.2, "pg backends of api": 0.1, "postgresql (rest)": 0.1, "new": 0.3, "gone": 0}
	for k, v := range want {
		if math.Abs(got[k]-v) > 1e-9 {
			t.Errorf("CoresUsed[%q] = %v, want %v (all: %v)", k, got[k], v, got)
		}
	}
	if _, ok := got["gone"]; !ok {
		t.Error("a group whose processes vanished lost its column")
	}
	// A reused pid (less CPU than before) counts from zero, never negative.
	reused := Sample{At: t0.Add(10 * time.Second), Procs: map[int]ProcCPU{2: {"kafka", 1}}}
	if got := CoresUsed(a, reused); got["kafka"] != 0.1 {
		t.Errorf("reused pid: %v, want 0.1", got["kafka"])
	}
	if len(CoresUsed(b, b)) != 0 {
		t.Error("zero wall time: want no values")
	}
}

func TestParseProcStatBusy(t *testing.T) {
	// user nice system idle iowait irq softirq steal guest guest_nice
	busy, err := parseProcStatBusy("cpu  100 5 50 1000 30 1 2 3 40 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n")
	if err != nil || busy != 1.61 {
		t.Errorf("busy = %v, %v; want 1.61 s (161 ticks)", busy, err)
	}
	if _, err := parseProcStatBusy("intr 1 2 3\n"); err == nil {
		t.Error("no cpu line: want an error")
	}
	if b, err := machineBusy(); err != nil || b <= 0 {
		t.Errorf("machineBusy = %v, %v", b, err)
	}
	a := Sample{At: time.Unix(0, 0), Procs: map[int]ProcCPU{1: {"api", 0}}, MachineBusy: 10}
	b := Sample{At: time.Unix(10, 0), Procs: map[int]ProcCPU{1: {"api", 5}}, MachineBusy: 22}
	if got := CoresUsed(a, b); got[OtherCPU] != 0.7 {
		t.Errorf("other = %v, want 1.2 − 0.5 = 0.7", got[OtherCPU])
	}
}
