package main

import (
	"errors"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestRankNearestRank(t *testing.T) {
	var l latencies
	for i := 1; i <= 1000; i++ {
		l = append(l, time.Duration(i)*time.Millisecond)
	}
	// Shuffle-ish: reverse, summarize must sort a copy.
	for i, j := 0, len(l)-1; i < j; i, j = i+1, j-1 {
		l[i], l[j] = l[j], l[i]
	}
	s := l.summarize()
	want := summary{N: 1000, Mean: 500500 * time.Microsecond, P50: 500 * time.Millisecond, P99: 990 * time.Millisecond, P999: 999 * time.Millisecond, Max: time.Second}
	if s != want {
		t.Fatalf("summarize = %+v, want %+v", s, want)
	}
	if l[0] != 1000*time.Millisecond {
		t.Fatal("summarize sorted the caller's slice")
	}
	if got := (latencies{7 * time.Second}).summarize(); got.P50 != 7*time.Second || got.P999 != 7*time.Second {
		t.Errorf("one value: %+v", got)
	}
	if got := (latencies{}).summarize(); got.N != 0 || got.Max != 0 {
		t.Errorf("empty: %+v", got)
	}
}

func TestSaveLoadResults(t *testing.T) {
	dir := t.TempDir()
	now := time.Now().UTC().Truncate(time.Second)
	pipeline := Result{Part: "pipeline", StartedAt: now, Rows: []Row{{Name: "x", Value: 1, Unit: "ms"}}}
	write := Result{Part: "write", StartedAt: now, Rows: []Row{Row{Name: "api", Value: 600, Unit: "cmd/s"}.WithBaseline("raw pgx", 1000)}}
	for _, r := range []Result{pipeline, write} {
		if _, err := saveResult(dir, r); err != nil {
			t.Fatalf("saveResult(%s): %v", r.Part, err)
		}
	}
	got, err := loadResults(dir)
	if err != nil {
		t.Fatalf("loadResults: %v", err)
	}
	if len(got) != 2 || got[0].Part != "write" || got[1].Part != "pipeline" {
		t.Fatalf("loaded parts %v, want write then pipeline (data-flow order)", parts2(got))
	}
	if r := got[0].Rows[0]; r.Ratio != 0.6 || r.Baseline != "raw pgx" {
		t.Errorf("baseline row = %+v, want ratio 0.6", r)
	}

	// A broken file is reported, the good ones still load.
	if err := os.WriteFile(filepath.Join(dir, "relay.json"), []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err = loadResults(dir)
	if err == nil || !strings.Contains(err.Error(), "relay.json") {
		t.Errorf("loadResults with a broken file: err = %v, want it named", err)
	}
	if len(got) != 2 {
		t.Errorf("loaded %d results next to a broken file, want 2", len(got))
	}
}

func parts2(rs []Result) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.Part)
	}
	return out
}

func TestSaveResultRejects(t *testing.T) {
	dir := t.TempDir()
	if _, err := saveResult(dir, Result{}); !errors.Is(err, errNoPart) {
		t.Errorf("no part: err = %v, want errNoPart", err)
	}
	_, err := saveResult(dir, Result{Part: "relay", Rows: []Row{{Name: "drain", Value: math.NaN()}}})
	if err == nil || !strings.Contains(err.Error(), `"drain"`) {
		t.Errorf("NaN row: err = %v, want an error naming the row", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "relay.json")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("an invalid result was written: %v", err)
	}
}

func TestDropStaleAndMissing(t *testing.T) {
	since := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	rs := []Result{
		{Part: "write", StartedAt: since.Add(time.Minute)},
		{Part: "relay", StartedAt: since.Add(-time.Hour)},
		{Part: "pipeline", StartedAt: since.Add(2 * time.Minute)},
	}
	cur, stale := dropStale(rs, since)
	if len(cur) != 2 || len(stale) != 1 || stale[0].Part != "relay" {
		t.Fatalf("cur %v stale %v", parts2(cur), parts2(stale))
	}
	if m := missingParts(cur); strings.Join(m, ",") != "relay,projector" {
		t.Errorf("missing = %v, want relay, projector", m)
	}
	if cur, _ := dropStale(rs, time.Time{}); len(cur) != 3 {
		t.Errorf("no since: kept %d, want all 3", len(cur))
	}
}

func TestReplaceBlock(t *testing.T) {
	doc := "# Bench\n\nintro\n\n" + mdStart + "\nold numbers\n" + mdEnd + "\n\nafter\n"
	got, err := replaceBlock(doc, "new numbers\n")
	if err != nil {
		t.Fatal(err)
	}
	want := "# Bench\n\nintro\n\n" + mdStart + "\nnew numbers\n" + mdEnd + "\n\nafter\n"
	if got != want {
		t.Errorf("replaceBlock =\n%q\nwant\n%q", got, want)
	}
	// Idempotent.
	again, _ := replaceBlock(got, "new numbers\n")
	if again != got {
		t.Error("replacing twice changed the document")
	}
	// No markers: appended.
	got, err = replaceBlock("# Bench", "x\n")
	if err != nil || got != "# Bench\n\n"+mdStart+"\nx\n"+mdEnd+"\n" {
		t.Errorf("append: %q, %v", got, err)
	}
	for _, bad := range []string{
		mdEnd + mdStart,
		mdStart + "only start",
		mdStart + mdEnd + mdStart + mdEnd,
	} {
		if _, err := replaceBlock(bad, "x\n"); !errors.Is(err, errMarkers) {
			t.Errorf("replaceBlock(%q) err = %v, want errMarkers", bad, err)
		}
	}
}

func TestRenderMarkdownAndSummary(t *testing.T) {
	pass := true
	rs := []Result{{
		Part: "projector", Seconds: 61,
		Rows: []Row{
			Row{Name: "projector events/s (1 worker)", Value: 7000, Unit: "events/s"}.WithBaseline("raw _bulk", 10000).WithTarget("ratio ≥ 0.7", true),
			{Name: "odd | name", Value: 0.5, Unit: "ms", Pass: &pass, Target: "t"},
		},
		Tables: []Table{{Title: "detail", Columns: []string{"a", "b"}, Rows: [][]string{{"1"}}}},
		Notes:  []string{"a note"},
	}}
	run := runInfo{Now: time.Date(2026, 1, 1, 12, 10, 0, 0, time.UTC), Since: time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)}
	md := renderMarkdown(run, machineInfo{Cores: 2, Kafka: "4.1.1"}, rs, []string{"write"}, nil, []string{"docs/bench/x.png"})
	for _, want := range []string{
		"whole `make bench` took 10m0s",
		"| projector | projector events/s (1 worker) | 7000 events/s | raw _bulk: 10000 events/s | 0.70 | ratio ≥ 0.7 ✓ |",
		`odd \| name`,
		"| 1 |  |", // short row padded
		"**write**: no result",
		"| Kafka | 4.1.1 |",
		"![x](docs/bench/x.png)",
		"- a note",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
	var sb strings.Builder
	writeSummaryText(&sb, run, rs, []string{"write"}, nil)
	out := sb.String()
	for _, want := range []string{"PART", "projector events/s (1 worker)", "0.70", "write: no result"} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q:\n%s", want, out)
		}
	}
}

func TestFmtNum(t *testing.T) {
	for v, want := range map[float64]string{0: "0", 1234.4: "1234", 12.34: "12.3", 1.234: "1.23", 0.1234: "0.123", -50: "-50.0"} {
		if got := fmtNum(v); got != want {
			t.Errorf("fmtNum(%v) = %q, want %q", v, got, want)
		}
	}
}

func TestPlotGroupsAndDraw(t *testing.T) {
	rs := []Result{
		{Part: "pipeline", Series: []Series{
			{Name: "latency_vs_rate/e2e p50", XLabel: "rate", YLabel: "ms", Points: []Point{{250, 900}, {500, 950}, {1000, 0}}},
			{Name: "latency_vs_rate/e2e p99", Points: []Point{{250, 1500}, {500, 1700}}},
			{Name: "no-slash", Points: []Point{{1, 1}}},
			{Name: "empty/line"},
		}},
		{Part: "projector", Series: []Series{
			{Name: "throughput_vs_workers/projector", Points: []Point{{1, 7000}, {2, 9000}}},
		}},
	}
	groups := plotGroups(rs)
	if len(groups) != 2 {
		t.Fatalf("groups = %+v, want 2", groups)
	}
	if g := groups[0]; g.File() != "pipeline_latency_vs_rate.png" || len(g.Lines) != 2 || g.Lines[1].Name != "e2e p99" || !g.logY() {
		t.Errorf("latency group = %+v", g)
	}
	dir := t.TempDir()
	files, err := drawPlots(dir, groups)
	if err != nil {
		t.Fatalf("drawPlots: %v", err)
	}
	if len(files) != 2 {
		t.Fatalf("files = %v", files)
	}
	for _, f := range files {
		fh, err := os.Open(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		img, err := png.Decode(fh)
		fh.Close()
		if err != nil {
			t.Fatalf("%s is not a PNG: %v", f, err)
		}
		if b := img.Bounds(); b.Dx() < 300 || b.Dy() < 200 {
			t.Errorf("%s is %v, too small", f, b)
		}
	}
	// A group with nothing drawable is an error, not an empty picture.
	_, err = drawPlots(dir, []plotGroup{{Part: "p", ID: "latency_x", Lines: []Series{{Name: "l", Points: []Point{{1, 0}}}}}})
	if err == nil {
		t.Error("drawing a log plot with only y=0 points succeeded")
	}
}

func TestKafkaVersionFromCmdline(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{"kafka-clients-4.1.1.jar", "kafka_2.13-4.1.1.jar"} {
		if err := os.WriteFile(filepath.Join(dir, n), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := strings.Join([]string{"java", "-Xmx512m", "-cp", dir + "/*", "kafka.Kafka", "server.properties"}, "\x00") + "\x00"
	if v, err := kafkaVersionFromCmdline([]byte(cmd)); err != nil || v != "4.1.1" {
		t.Errorf("wildcard class path: %q, %v", v, err)
	}
	cmd = "java\x00-cp\x00/opt/a.jar:/opt/libs/kafka_2.13-3.9.0.jar\x00kafka.Kafka\x00"
	if v, err := kafkaVersionFromCmdline([]byte(cmd)); err != nil || v != "3.9.0" {
		t.Errorf("explicit class path: %q, %v", v, err)
	}
	if _, err := kafkaVersionFromCmdline([]byte("java\x00-cp\x00/opt/other.jar\x00Main\x00")); err == nil {
		t.Error("no broker jar: want an error")
	}
}

func TestSysinfoParsers(t *testing.T) {
	if m := cpuModel(strings.NewReader("processor\t: 0\nmodel name\t: Test CPU @ 2GHz\n")); m != "Test CPU @ 2GHz" {
		t.Errorf("cpuModel = %q", m)
	}
	if kb, ok := memTotalKB(strings.NewReader("MemTotal:       24592500 kB\nMemFree: 1 kB\n")); !ok || kb != 24592500 {
		t.Errorf("memTotalKB = %d, %v", kb, ok)
	}
	if _, ok := memTotalKB(strings.NewReader("nothing\n")); ok {
		t.Error("memTotalKB without MemTotal: ok")
	}
	v, err := parseESNodesVersion(strings.NewReader(`{"nodes":{"abc":{"version":"8.15.5"}}}`))
	if err != nil || v != "8.15.5" {
		t.Errorf("parseESNodesVersion = %q, %v", v, err)
	}
	if _, err := parseESNodesVersion(strings.NewReader(`{}`)); err == nil {
		t.Error("no nodes: want an error")
	}
}

func TestIntegerTicksDropCrowdedLabels(t *testing.T) {
	ticks, ok := integerTicks(map[float64]bool{250: true, 400: true, 450: true, 500: true, 1000: true, 2000: true})
	if !ok {
		t.Fatal("integer x values: want ticks")
	}
	var labels []string
	for _, tk := range ticks {
		labels = append(labels, tk.Label)
	}
	if got := strings.Join(labels, ","); got != "250,400,,,1000,2000" {
		t.Errorf("labels = %q, want the crowded 450 and 500 unlabelled", got)
	}
	if _, ok := integerTicks(map[float64]bool{1.5: true}); ok {
		t.Error("fractional x: want the default ticker")
	}
}
