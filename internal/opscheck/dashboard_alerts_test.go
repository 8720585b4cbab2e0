package opscheck

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// A panel watches the alerts its runbook links name: each link is
// ${runbook_base}#<alert anchor>. For an alert with a level (its
// expression's first `> N`, N > 0) the panel shows that level as a
// threshold step in the alert's severity colour, and no other steps.
const runbookLinkPrefix = "${runbook_base}#"

var (
	firstLevel     = regexp.MustCompile(`>\s*([0-9]+(?:\.[0-9]+)?)\b`)
	severityColour = map[string]string{"warning": "orange", "critical": "red"}
)

type alertLevel struct {
	level    float64 // 0: the alert has no level a panel can show
	severity string
	metrics  []string
}

func alertLevels(t *testing.T) map[string]alertLevel {
	t.Helper()
	out := map[string]alertLevel{}
	for _, r := range loadAlertRules(t) {
		if r.Alert == "" {
			continue
		}
		a := alertLevel{severity: r.Labels["severity"], metrics: MetricNames(r.Expr)}
		if m := firstLevel.FindStringSubmatch(r.Expr); m != nil {
			v, err := strconv.ParseFloat(m[1], 64)
			if err != nil {
				t.Fatalf("%s: level %q: %v", r.Alert, m[1], err)
			}
			a.level = v
		}
		out[strings.ToLower(r.Alert)] = a
	}
	return out
}

type step struct {
	value  float64
	colour string
}

func (s step) String() string { return fmt.Sprintf("%s@%g", s.colour, s.value) }

// watchedAlerts returns the anchors of the alerts a panel links to.
func watchedAlerts(p Panel) []string {
	var out []string
	for _, l := range p.Links {
		if a, ok := strings.CutPrefix(l.URL, runbookLinkPrefix); ok {
			out = append(out, a)
		}
	}
	return out
}

func TestPanelRunbookLinks(t *testing.T) {
	anchors, _ := runbookAnchors(t)
	levels := alertLevels(t)
	linked := map[string]bool{}
	for _, d := range loadDashboards(t) {
		for _, p := range d.AllPanels() {
			for _, l := range p.Links {
				where := fmt.Sprintf("%s / panel %q link %q", d.Title, p.Title, l.Title)
				anchor, ok := strings.CutPrefix(l.URL, runbookLinkPrefix)
				if !ok {
					t.Errorf("%s: url %q, want %s<alert anchor>", where, l.URL, runbookLinkPrefix)
					continue
				}
				if !anchors[anchor] {
					t.Errorf("%s: docs/operations.md has no heading #%s", where, anchor)
				}
				if _, ok := levels[anchor]; !ok {
					t.Errorf("%s: #%s is no alert of deploy/prometheus/rules", where, anchor)
				}
				if !strings.EqualFold(l.Title, "Runbook: "+anchor) {
					t.Errorf("%s: title, want \"Runbook: <alert name>\"", where)
				}
				linked[anchor] = true
			}
		}
	}
	for a := range levels {
		if !linked[a] {
			t.Errorf("alert %s: no dashboard panel links to its runbook section (which panel shows what it watches?)", a)
		}
	}
}

// TestRunbookBaseVariable: the links' base is one constant per dashboard,
// the chart's monitoring.runbookBaseURL default, an absolute URL of
// docs/operations.md (the chart replaces it with the configured one).
func TestRunbookBaseVariable(t *testing.T) {
	var values struct {
		Monitoring struct {
			RunbookBaseURL string `yaml:"runbookBaseURL"`
		} `yaml:"monitoring"`
	}
	readYAML(t, filepath.Join(repoRoot, chartDir, "values.yaml"), &values)
	base := values.Monitoring.RunbookBaseURL
	if !strings.HasPrefix(base, "https://") || !strings.HasSuffix(base, "/docs/operations.md") {
		t.Fatalf("chart monitoring.runbookBaseURL %q: want an absolute https URL of docs/operations.md", base)
	}
	for _, d := range loadDashboards(t) {
		i := slices.IndexFunc(d.Templating.List, func(v Variable) bool { return v.Name == "runbook_base" })
		if i < 0 {
			t.Errorf("%s: no runbook_base variable", d.Title)
			continue
		}
		if v := d.Templating.List[i]; v.Type != "constant" || v.QueryString() != base {
			t.Errorf("%s: runbook_base is a %s of %q, want a constant of the chart's default %q", d.Title, v.Type, v.QueryString(), base)
		}
	}
}

func TestPanelThresholdsMatchAlertLevels(t *testing.T) {
	levels := alertLevels(t)
	shown := 0
	for _, d := range loadDashboards(t) {
		for _, p := range d.AllPanels() {
			where := fmt.Sprintf("%s / panel %q", d.Title, p.Title)
			var want []step
			var metrics []string
			for _, q := range p.Targets {
				metrics = append(metrics, MetricNames(q.Expr)...)
			}
			for _, a := range watchedAlerts(p) {
				lv := levels[a]
				if !slices.ContainsFunc(lv.metrics, func(m string) bool { return slices.Contains(metrics, m) }) {
					t.Errorf("%s links alert %s but queries none of its metrics %v", where, a, lv.metrics)
				}
				if lv.level > 0 {
					want = append(want, step{lv.level, severityColour[lv.severity]})
				}
			}
			got, err := panelSteps(p)
			if err != nil {
				t.Errorf("%s: %v", where, err)
				continue
			}
			sort.Slice(want, func(i, j int) bool { return want[i].value < want[j].value })
			if !slices.Equal(got, want) {
				t.Errorf("%s: threshold steps %v, want %v (the levels of the alerts it links)", where, got, want)
			}
			shown += len(got)
		}
	}
	if shown < 8 {
		t.Fatalf("only %d alert levels shown on panels", shown)
	}
}

// panelSteps returns a panel's threshold steps after the base step.
func panelSteps(p Panel) ([]step, error) {
	th := p.FieldConfig.Defaults.Thresholds
	if th == nil {
		return nil, nil
	}
	if th.Mode != "absolute" || len(th.Steps) == 0 || th.Steps[0].Value != nil || th.Steps[0].Color != "green" {
		return nil, fmt.Errorf("thresholds must be absolute and start with a green base step: %+v", th)
	}
	var out []step
	for _, s := range th.Steps[1:] {
		if s.Value == nil {
			return nil, fmt.Errorf("a threshold step after the base has no value")
		}
		out = append(out, step{*s.Value, s.Color})
	}
	return out, nil
}

// TestDashboardsImportable: an import dialog asks for the Prometheus
// datasource (__inputs), which becomes the datasource variable's value;
// nothing names a fixed datasource uid; __requires lists what is used.
func TestDashboardsImportable(t *testing.T) {
	for _, d := range loadDashboards(t) {
		if len(d.Inputs) != 1 || d.Inputs[0].Name != "DS_PROMETHEUS" || d.Inputs[0].Type != "datasource" || d.Inputs[0].PluginID != "prometheus" {
			t.Errorf("%s: __inputs %+v, want one prometheus datasource input DS_PROMETHEUS", d.Title, d.Inputs)
		}
		i := slices.IndexFunc(d.Templating.List, func(v Variable) bool { return v.Name == "datasource" })
		if i < 0 || string(d.Templating.List[i].Current.Value) != `"${DS_PROMETHEUS}"` {
			t.Errorf("%s: the datasource variable's current value must be ${DS_PROMETHEUS} (set by the import dialog)", d.Title)
		}
		requires := map[string]bool{}
		for _, r := range d.Requires {
			requires[r.Type+"/"+r.ID] = true
		}
		for _, want := range []string{"grafana/grafana", "datasource/prometheus"} {
			if !requires[want] {
				t.Errorf("%s: __requires lacks %s", d.Title, want)
			}
		}
		for _, p := range d.AllPanels() {
			if p.Type != "row" && !requires["panel/"+p.Type] {
				t.Errorf("%s: __requires lacks panel %s", d.Title, p.Type)
			}
			for _, tg := range p.Targets {
				if tg.Datasource == nil || tg.Datasource.UID != dashboardDatasource {
					t.Errorf("%s / panel %q target %s: datasource %+v, want uid %s", d.Title, p.Title, tg.RefID, tg.Datasource, dashboardDatasource)
				}
			}
		}
		raw, err := os.ReadFile(d.File)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range regexp.MustCompile(`\$\{(DS_[A-Z0-9_]+)\}`).FindAllStringSubmatch(string(raw), -1) {
			if m[1] != "DS_PROMETHEUS" {
				t.Errorf("%s: ${%s} is no input", d.Title, m[1])
			}
		}
	}
}

// TestLatencyPanelsAskForExemplars: the histogram panels request
// exemplars, so a trace link appears on their points once the binaries
// attach trace ids to observations.
func TestLatencyPanelsAskForExemplars(t *testing.T) {
	n := 0
	for _, d := range loadDashboards(t) {
		for _, p := range d.AllPanels() {
			for _, tg := range p.Targets {
				if p.Type == "timeseries" && strings.Contains(tg.Expr, "histogram_quantile") {
					n++
					if !tg.Exemplar {
						t.Errorf("%s / panel %q target %s: histogram without exemplar: true", d.Title, p.Title, tg.RefID)
					}
				}
			}
		}
	}
	if n == 0 {
		t.Fatal("no histogram panels found")
	}
}

// TestExemplarsLinkToTraces: the provisioned datasource turns an
// exemplar's trace_id into a link titled "trace" whose URL ends with the
// trace id, so the exemplars the latency panels ask for lead to a trace.
func TestExemplarsLinkToTraces(t *testing.T) {
	var f struct {
		Datasources []struct {
			JSONData struct {
				Destinations []struct {
					Name  string `yaml:"name"`
					Label string `yaml:"urlDisplayLabel"`
					URL   string `yaml:"url"`
				} `yaml:"exemplarTraceIdDestinations"`
			} `yaml:"jsonData"`
		} `yaml:"datasources"`
	}
	readYAML(t, filepath.Join(repoRoot, "deploy/grafana/provisioning/datasources/prometheus.yml"), &f)
	if len(f.Datasources) != 1 || len(f.Datasources[0].JSONData.Destinations) != 1 {
		t.Fatalf("want one exemplar trace destination on the one datasource, got %+v", f.Datasources)
	}
	d := f.Datasources[0].JSONData.Destinations[0]
	// $$ is how a provisioning file writes a literal $ (the rest is
	// expanded from the environment).
	if d.Name != "trace_id" || d.Label != "trace" || !strings.HasSuffix(d.URL, "$${__value.raw}") {
		t.Fatalf("exemplar destination %+v: want trace_id → a \"trace\" link ending in the trace id ($${__value.raw})", d)
	}
}
