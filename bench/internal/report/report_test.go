package report

import (
	"errors"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"cqrsflow/bench/internal/result"
)

func parts2(rs []result.Result) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.Part)
	}
	return out
}

func TestDropStaleAndMissing(t *testing.T) {
	since := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	rs := []result.Result{
		{Part: "write", StartedAt: since.Add(time.Minute)},
		{Part: "relay", StartedAt: since.Add(-time.Hour)},
		{Part: "pipeline", StartedAt: since.Add(2 * time.Minute)},
	}
	cur, stale := dropStale(rs, since)
	if len(cur) != 2 || len(stale) != 1 || stale[0].Part != "relay" {
		t.Fatalf("cur %v stale %v", parts2(cur), parts2(stale))
	}
	if m := missingParts(cur); strings.Join(m, ",") != "relay,projector,read" {
		t.Errorf("missing = %v, want relay, projector, read", m)
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
	rs := []result.Result{{
		Part: "projector", Seconds: 61,
		Rows: []result.Row{
			result.Row{Name: "projector events/s (1 worker)", Value: 7000, Unit: "events/s"}.WithBaseline("raw _bulk", 10000).WithTarget("ratio ≥ 0.7", true),
			{Name: "odd | name", Value: 0.5, Unit: "ms", Pass: &pass, Target: "t"},
		},
		Tables: []result.Table{{Title: "detail", Columns: []string{"a", "b"}, Rows: [][]string{{"1"}}}},
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

func TestPlotGroupsAndDraw(t *testing.T) {
	rs := []result.Result{
		{Part: "pipeline", Series: []result.Series{
			{Name: "latency_vs_rate/e2e p50", XLabel: "rate", YLabel: "ms", Points: []result.Point{{X: 250, Y: 900}, {X: 500, Y: 950}, {X: 1000, Y: 0}}},
			{Name: "latency_vs_rate/e2e p99", Points: []result.Point{{X: 250, Y: 1500}, {X: 500, Y: 1700}}},
			{Name: "no-slash", Points: []result.Point{{X: 1, Y: 1}}},
			{Name: "empty/line"},
		}},
		{Part: "projector", Series: []result.Series{
			{Name: "throughput_vs_workers/projector", Points: []result.Point{{X: 1, Y: 7000}, {X: 2, Y: 9000}}},
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
	_, err = drawPlots(dir, []plotGroup{{Part: "p", ID: "latency_x", Lines: []result.Series{{Name: "l", Points: []result.Point{{X: 1, Y: 0}}}}}})
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

// TestWriteRowsSameNameOtherBaselines: the write part reports the api's
// throughput twice, against the one-per-transaction baseline (with the
// target) and against the grouped one (the ceiling); both rows appear.
func TestWriteRowsSameNameOtherBaselines(t *testing.T) {
	rs := []result.Result{{Part: "write", Rows: []result.Row{
		result.Row{Name: "api mixed commands, group commit, 64 clients", Value: 4200, Unit: "cmd/s"}.
			WithBaseline("raw pgx, one command per transaction", 4000).WithTarget("ratio ≥ 1.0", true),
		result.Row{Name: "api mixed commands, group commit, 64 clients", Value: 4200, Unit: "cmd/s"}.
			WithBaseline("raw pgx, group commit (ceiling)", 8400),
		result.Row{Name: "api mixed commands, GROUP_COMMIT=false, 64 clients", Value: 2600, Unit: "cmd/s"}.
			WithBaseline("raw pgx, one command per transaction", 4000),
	}}}
	md := renderMarkdown(runInfo{Now: time.Now()}, machineInfo{}, rs, nil, nil, nil)
	for _, want := range []string{
		"| write | api mixed commands, group commit, 64 clients | 4200 cmd/s | raw pgx, one command per transaction: 4000 cmd/s | 1.05 | ratio ≥ 1.0 ✓ |",
		"| write | api mixed commands, group commit, 64 clients | 4200 cmd/s | raw pgx, group commit (ceiling): 8400 cmd/s | 0.50 |",
		"| write | api mixed commands, GROUP_COMMIT=false, 64 clients | 2600 cmd/s | raw pgx, one command per transaction: 4000 cmd/s | 0.65 |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
}
