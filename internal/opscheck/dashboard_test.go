package opscheck

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// repoRoot is where the tests find deploy/ and docs/.
const repoRoot = "../.."

// contractMetrics reads the metric table of docs/architecture.md.
func contractMetrics(t *testing.T) map[string]Metric {
	t.Helper()
	m, err := Metrics(architectureDoc)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// contractFamily maps a series name to its contract metric
// (cqrsflow_x_bucket → cqrsflow_x for histograms); ok false if unknown.
func contractFamily(contract map[string]Metric, series string) (string, bool) {
	if series == "up" {
		return series, true
	}
	if _, ok := contract[series]; ok {
		return series, true
	}
	for _, suf := range []string{"_bucket", "_sum", "_count"} {
		base, found := strings.CutSuffix(series, suf)
		if found && contract[base].Type == "histogram" {
			return base, true
		}
	}
	return "", false
}

// dashboardDatasource is the datasource every panel, target and query
// variable names: the dashboards' datasource variable, so they import into
// any Grafana (the import dialog asks for it through __inputs; a
// provisioned copy resolves it to the default Prometheus datasource).
const dashboardDatasource = "${datasource}"

// provisionedDatasourceUID reads the Prometheus datasource uid from the
// Grafana provisioning file; it must be the default datasource, which the
// dashboards' datasource variable resolves to.
func provisionedDatasourceUID(t *testing.T) string {
	t.Helper()
	var f struct {
		APIVersion  int `yaml:"apiVersion"`
		Datasources []struct {
			Name, UID, Type, URL string
			IsDefault            bool `yaml:"isDefault"`
		} `yaml:"datasources"`
	}
	readYAML(t, filepath.Join(repoRoot, "deploy/grafana/provisioning/datasources/prometheus.yml"), &f)
	if f.APIVersion != 1 || len(f.Datasources) != 1 {
		t.Fatalf("datasource provisioning: want apiVersion 1 and one datasource, got %+v", f)
	}
	ds := f.Datasources[0]
	if ds.Type != "prometheus" || ds.UID == "" || !ds.IsDefault || !strings.HasPrefix(ds.URL, "http://") {
		t.Fatalf("datasource provisioning: want a default prometheus datasource with a uid and an http URL, got %+v", ds)
	}
	return ds.UID
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func loadDashboards(t *testing.T) []*Dashboard {
	t.Helper()
	ds, err := LoadDashboards(filepath.Join(repoRoot, "deploy/grafana/dashboards"))
	if err != nil {
		t.Fatal(err)
	}
	return ds
}

func TestDashboardsLintClean(t *testing.T) {
	provisionedDatasourceUID(t)
	uids, titles := map[string]string{}, map[string]string{}
	for _, d := range loadDashboards(t) {
		for _, p := range Lint(d, dashboardDatasource) {
			t.Errorf("%s: %s", filepath.Base(d.File), p)
		}
		if other, dup := uids[d.UID]; dup {
			t.Errorf("%s: uid %q already used by %s", d.File, d.UID, other)
		}
		uids[d.UID] = d.File
		if other, dup := titles[d.Title]; dup {
			t.Errorf("%s: title %q already used by %s", d.File, d.Title, other)
		}
		titles[d.Title] = d.File
	}
	for _, want := range []string{"cqrsflow — pipeline overview", "cqrsflow — projection"} {
		if _, ok := titles[want]; !ok {
			t.Errorf("no dashboard titled %q (have %v)", want, titles)
		}
	}
}

func TestDashboardMetricsAreContract(t *testing.T) {
	contract := contractMetrics(t)
	used := map[string]bool{}
	for _, d := range loadDashboards(t) {
		for _, q := range d.Queries() {
			for _, m := range MetricNames(q.Expr) {
				fam, ok := contractFamily(contract, m)
				if !ok {
					t.Errorf("%s: metric %s is not in the metric table of docs/architecture.md", q, m)
					continue
				}
				if d.UID == "cqrsflow-overview" {
					used[fam] = true
				}
			}
		}
	}
	// The overview shows every metric the table marks "overview".
	for m, row := range contract {
		if row.Overview && !used[m] {
			t.Errorf("the overview dashboard does not use contract metric %s", m)
		}
	}
}

func TestProjectionDashboardHasProjectionVariable(t *testing.T) {
	for _, d := range loadDashboards(t) {
		if d.UID != "cqrsflow-projection" {
			continue
		}
		var found bool
		for _, v := range d.Templating.List {
			if v.Name == "projection" && v.Type == "query" && strings.HasPrefix(v.QueryString(), "label_values(") {
				found = true
			}
		}
		if !found {
			t.Fatal("projection dashboard: no query variable `projection` with label_values(...)")
		}
		n := 0
		for _, q := range d.Queries() {
			if slices.Contains(VariableRefs(q.Expr), "projection") {
				n++
			}
		}
		if n < 5 {
			t.Fatalf("projection dashboard: only %d queries filter on $projection", n)
		}
		return
	}
	t.Fatal("no dashboard with uid cqrsflow-projection")
}

func TestDashboardProviderMatchesCompose(t *testing.T) {
	var f struct {
		Providers []struct {
			Name    string `yaml:"name"`
			Type    string `yaml:"type"`
			Options struct {
				Path string `yaml:"path"`
			} `yaml:"options"`
		} `yaml:"providers"`
	}
	readYAML(t, filepath.Join(repoRoot, "deploy/grafana/provisioning/dashboards/cqrsflow.yml"), &f)
	if len(f.Providers) != 1 || f.Providers[0].Type != "file" || f.Providers[0].Options.Path == "" {
		t.Fatalf("dashboard provider: want one file provider with a path, got %+v", f.Providers)
	}
}

// The linter must catch what it claims to catch.
func TestLintFindsProblems(t *testing.T) {
	ds := &DatasourceRef{Type: "prometheus", UID: "prometheus"}
	panel := func(id int, x, y int, expr string) Panel {
		p := Panel{ID: id, Type: "timeseries", Title: "p", Description: "d", Datasource: ds,
			GridPos: GridPos{W: 8, H: 8, X: x, Y: y},
			Targets: []Target{{RefID: "A", Expr: expr}}}
		p.FieldConfig.Defaults.Unit = "s"
		return p
	}
	good := func() *Dashboard {
		return &Dashboard{UID: "u", Title: "t", Tags: []string{"cqrsflow"}, SchemaVersion: 39,
			Panels: []Panel{panel(1, 0, 0, "max(cqrsflow_outbox_pending_events)")}}
	}
	if p := Lint(good(), "prometheus"); len(p) != 0 {
		t.Fatalf("good dashboard: %v", p)
	}
	cases := []struct {
		name  string
		bad   func(d *Dashboard)
		wants string
	}{
		{"duplicate id", func(d *Dashboard) { d.Panels = append(d.Panels, panel(1, 8, 0, "up")) }, "already used"},
		{"overlap", func(d *Dashboard) { d.Panels = append(d.Panels, panel(2, 4, 4, "up")) }, "overlaps panel 1"},
		{"off grid", func(d *Dashboard) { d.Panels[0].GridPos.X = 20 }, "outside the 24-column grid"},
		{"wrong datasource", func(d *Dashboard) { d.Panels[0].Datasource = &DatasourceRef{Type: "prometheus", UID: "other"} }, "datasource must be"},
		{"wrong target datasource", func(d *Dashboard) { d.Panels[0].Targets[0].Datasource = &DatasourceRef{UID: "x"} }, `datasource uid "x"`},
		{"empty expr", func(d *Dashboard) { d.Panels[0].Targets[0].Expr = " " }, "empty expr"},
		{"fixed range", func(d *Dashboard) { d.Panels[0].Targets[0].Expr = "rate(cqrsflow_relay_published_total[5m])" }, "[$__rate_interval]"},
		{"undefined variable", func(d *Dashboard) {
			d.Panels[0].Targets[0].Expr = `cqrsflow_projector_sync_lag_seconds{projection="$projection"}`
		}, "undefined variable $projection"},
		{"no metric", func(d *Dashboard) { d.Panels[0].Targets[0].Expr = "vector(1)" }, "uses no cqrsflow metric"},
		{"no targets", func(d *Dashboard) { d.Panels[0].Targets = nil }, "no targets"},
		{"no unit", func(d *Dashboard) { d.Panels[0].FieldConfig.Defaults.Unit = "" }, "no unit"},
		{"no description", func(d *Dashboard) { d.Panels[0].Description = "" }, "no description"},
		{"repeated refId", func(d *Dashboard) { d.Panels[0].Targets = append(d.Panels[0].Targets, d.Panels[0].Targets[0]) }, "refId empty or repeated"},
		{"no tag", func(d *Dashboard) { d.Tags = nil }, "not tagged"},
		{"old schema", func(d *Dashboard) { d.SchemaVersion = 16 }, "schemaVersion 16"},
		{"variable without datasource", func(d *Dashboard) {
			d.Templating.List = []Variable{{Name: "projection", Type: "query", Query: []byte(`"label_values(up, job)"`)}}
		}, `variable "projection": datasource`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := good()
			tc.bad(d)
			probs := Lint(d, "prometheus")
			if !slices.ContainsFunc(probs, func(p string) bool { return strings.Contains(p, tc.wants) }) {
				t.Fatalf("want a problem containing %q, got %q", tc.wants, probs)
			}
		})
	}
}

// The portable form: a datasource variable and job/instance filters.
func TestLintFindsTemplatingProblems(t *testing.T) {
	dsv := &DatasourceRef{Type: "prometheus", UID: "${datasource}"}
	good := func() *Dashboard {
		d := &Dashboard{UID: "u", Title: "t", Tags: []string{"cqrsflow"}, SchemaVersion: 39}
		d.Templating.List = []Variable{
			{Name: "datasource", Type: "datasource", Query: []byte(`"prometheus"`)},
			{Name: "job", Type: "query", Datasource: dsv, Query: []byte(`"label_values(up, job)"`), Multi: true, IncludeAll: true},
			{Name: "instance", Type: "query", Datasource: dsv, Query: []byte(`"label_values(up, instance)"`), Multi: true, IncludeAll: true},
		}
		p := Panel{ID: 1, Type: "timeseries", Title: "p", Description: "d", Datasource: dsv,
			GridPos: GridPos{W: 8, H: 8},
			Targets: []Target{{RefID: "A", Expr: `max(cqrsflow_outbox_pending_events{job=~"$job",instance=~"$instance"}) / max(up{instance=~"$instance",job=~"$job"})`}}}
		p.FieldConfig.Defaults.Unit = "s"
		d.Panels = []Panel{p}
		return d
	}
	if p := Lint(good(), "${datasource}"); len(p) != 0 {
		t.Fatalf("good dashboard: %v", p)
	}
	cases := []struct {
		name  string
		bad   func(d *Dashboard)
		wants string
	}{
		{"no datasource variable", func(d *Dashboard) { d.Templating.List = d.Templating.List[1:] }, `no datasource variable "datasource"`},
		{"datasource variable of another type", func(d *Dashboard) { d.Templating.List[0].Query = []byte(`"loki"`) }, `no datasource variable "datasource"`},
		{"fixed panel datasource", func(d *Dashboard) { d.Panels[0].Datasource = &DatasourceRef{Type: "prometheus", UID: "prometheus"} }, "datasource must be"},
		{"job variable single-valued", func(d *Dashboard) { d.Templating.List[1].Multi = false }, `variable "job"`},
		{"no instance variable", func(d *Dashboard) { d.Templating.List = d.Templating.List[:2] }, `variable "instance"`},
		{"selector without job", func(d *Dashboard) {
			d.Panels[0].Targets[0].Expr = `max(cqrsflow_outbox_pending_events{instance=~"$instance"})`
		}, "does not filter on job"},
		{"bare selector", func(d *Dashboard) {
			d.Panels[0].Targets[0].Expr = `max(cqrsflow_outbox_pending_events{job=~"$job",instance=~"$instance"}) * on() group_left max(up)`
		}, "selector up does not filter"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := good()
			tc.bad(d)
			probs := Lint(d, "${datasource}")
			if !slices.ContainsFunc(probs, func(p string) bool { return strings.Contains(p, tc.wants) }) {
				t.Fatalf("want a problem containing %q, got %q", tc.wants, probs)
			}
		})
	}
}

func TestMetricNames(t *testing.T) {
	cases := []struct {
		expr string
		want []string
	}{
		{`sum by (le) (rate(cqrsflow_relay_publish_lag_seconds_bucket[$__rate_interval]))`, []string{"cqrsflow_relay_publish_lag_seconds_bucket"}},
		{`up{job=~"api|projector"}`, []string{"up"}},
		{`max by (job, instance, version) (cqrsflow_build_info)`, []string{"cqrsflow_build_info"}},
		// label values that look like metrics are not metrics
		{`cqrsflow_projector_events_total{projection="cqrsflow_x", outcome='dlq'} or sum by (group) (cqrsflow_y) * 0`, []string{"cqrsflow_projector_events_total", "cqrsflow_y"}},
		{`sum(rate(a_total[1m])) / sum(rate(b[1m]))`, nil},
		{`group_left(update) cqrsflow_a`, []string{"cqrsflow_a"}},
	}
	for _, tc := range cases {
		if got := MetricNames(tc.expr); !slices.Equal(got, tc.want) {
			t.Errorf("MetricNames(%q) = %q, want %q", tc.expr, got, tc.want)
		}
	}
}

func TestSelectors(t *testing.T) {
	expr := `sum(rate(cqrsflow_a_total{job=~"$job",x="}{cqrsflow_b"}[$__rate_interval])) / max(up) or cqrsflow_c{y="1"} offset 5m`
	want := []string{`cqrsflow_a_total{job=~"$job",x="}{cqrsflow_b"}`, "up", `cqrsflow_c{y="1"}`}
	if got := Selectors(expr); !slices.Equal(got, want) {
		t.Fatalf("Selectors = %q, want %q", got, want)
	}
}

func TestSubstitute(t *testing.T) {
	vars := map[string]string{"projection": "products"}
	cases := []struct{ in, want string }{
		{`rate(x{projection="$projection"}[$__rate_interval])`, `rate(x{projection="products"}[1m])`},
		{`x{projection="${projection}"}`, `x{projection="products"}`},
		{`x{projection="${projection:raw}"}`, `x{projection="products"}`},
		{`x{projection="[[projection]]"}`, `x{projection="products"}`},
		{`x{y="$unknown"}`, `x{y="$unknown"}`},
	}
	for _, tc := range cases {
		if got := Substitute(tc.in, vars); got != tc.want {
			t.Errorf("Substitute(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
