package result

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestSaveLoadResults(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(DirEnv, dir)
	now := time.Now().UTC().Truncate(time.Second)
	pipeline := Result{Part: "pipeline", StartedAt: now, Rows: []Row{{Name: "x", Value: 1, Unit: "ms"}}}
	write := Result{Part: "write", StartedAt: now, Rows: []Row{Row{Name: "api", Value: 600, Unit: "cmd/s"}.WithBaseline("raw pgx", 1000)}}
	for _, r := range []Result{pipeline, write} {
		path, err := Save(r)
		if err != nil {
			t.Fatalf("Save(%s): %v", r.Part, err)
		}
		if path != filepath.Join(dir, r.Part+".json") {
			t.Errorf("Save(%s) wrote %s, want it in %s=%s", r.Part, path, DirEnv, dir)
		}
	}
	got, err := Load()
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if len(got) != 2 || got[0].Part != "write" || got[1].Part != "pipeline" {
		t.Fatalf("loaded parts %v, want write then pipeline (data-flow order)", partNames(got))
	}
	if r := got[0].Rows[0]; r.Ratio != 0.6 || r.Baseline != "raw pgx" {
		t.Errorf("baseline row = %+v, want ratio 0.6", r)
	}

	// A broken file is reported, the good ones still load.
	if err := os.WriteFile(filepath.Join(dir, "relay.json"), []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err = Load()
	if err == nil || !strings.Contains(err.Error(), "relay.json") {
		t.Errorf("Load with a broken file: err = %v, want it named", err)
	}
	if len(got) != 2 {
		t.Errorf("loaded %d results next to a broken file, want 2", len(got))
	}
}

func partNames(rs []Result) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.Part)
	}
	return out
}

func TestSaveResultRejects(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(DirEnv, dir)
	if _, err := Save(Result{}); !errors.Is(err, ErrNoPart) {
		t.Errorf("no part: err = %v, want ErrNoPart", err)
	}
	_, err := Save(Result{Part: "relay", Rows: []Row{{Name: "drain", Value: math.NaN()}}})
	if err == nil || !strings.Contains(err.Error(), `"drain"`) {
		t.Errorf("NaN row: err = %v, want an error naming the row", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "relay.json")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("an invalid result was written: %v", err)
	}
}

func TestDirAndQuick(t *testing.T) {
	t.Setenv(DirEnv, "")
	if Dir() != "bench-results" {
		t.Errorf("Dir without %s = %q, want bench-results", DirEnv, Dir())
	}
	for v, want := range map[string]bool{"": false, "0": false, "false": false, " No ": false, "1": true, "yes": true} {
		t.Setenv(QuickEnv, v)
		if Quick() != want {
			t.Errorf("%s=%q: Quick() = %v, want %v", QuickEnv, v, !want, want)
		}
	}
	if Pick(true, 1, 2) != 1 || Pick(false, "q", "full") != "full" {
		t.Error("Pick chose the wrong value")
	}
}

func TestFormatNum(t *testing.T) {
	for v, want := range map[float64]string{0: "0", 1234.4: "1234", 12.34: "12.3", 1.234: "1.23", 0.1234: "0.123", -50: "-50.0"} {
		if got := FormatNum(v); got != want {
			t.Errorf("FormatNum(%v) = %q, want %q", v, got, want)
		}
	}
}
