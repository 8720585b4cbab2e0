package opscheck

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
)

// Dashboard is the part of a Grafana dashboard JSON model the checks read.
type Dashboard struct {
	Inputs        []Input  `json:"__inputs"`
	Requires      []Input  `json:"__requires"`
	UID           string   `json:"uid"`
	Title         string   `json:"title"`
	Tags          []string `json:"tags"`
	SchemaVersion int      `json:"schemaVersion"`
	Panels        []Panel  `json:"panels"`
	Templating    struct {
		List []Variable `json:"list"`
	} `json:"templating"`

	// File is where the dashboard was loaded from (not part of the JSON).
	File string `json:"-"`
}

// Input is an entry of __inputs (what Grafana's import dialog asks for)
// or of __requires (the plugins the dashboard needs).
type Input struct {
	Name     string `json:"name"`
	ID       string `json:"id"`
	Type     string `json:"type"`
	PluginID string `json:"pluginId"`
}

// DatasourceRef points a panel, target or variable at a datasource.
type DatasourceRef struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

// GridPos is a panel's place on the 24-column grid.
type GridPos struct {
	H int `json:"h"`
	W int `json:"w"`
	X int `json:"x"`
	Y int `json:"y"`
}

// Panel is a dashboard panel; rows hold nested panels when collapsed.
type Panel struct {
	ID          int            `json:"id"`
	Type        string         `json:"type"`
	Title       string         `json:"title"`
	Description string         `json:"description"`
	Datasource  *DatasourceRef `json:"datasource"`
	GridPos     GridPos        `json:"gridPos"`
	Targets     []Target       `json:"targets"`
	Panels      []Panel        `json:"panels"`
	Links       []Link         `json:"links"`
	FieldConfig struct {
		Defaults struct {
			Unit       string      `json:"unit"`
			Thresholds *Thresholds `json:"thresholds"`
		} `json:"defaults"`
	} `json:"fieldConfig"`
}

// Link is a panel link.
type Link struct {
	Title string `json:"title"`
	URL   string `json:"url"`
}

// Thresholds are a panel's colour steps; the first step has no value.
type Thresholds struct {
	Mode  string `json:"mode"`
	Steps []struct {
		Color string   `json:"color"`
		Value *float64 `json:"value"`
	} `json:"steps"`
}

// Target is one query of a panel.
type Target struct {
	RefID      string         `json:"refId"`
	Expr       string         `json:"expr"`
	Exemplar   bool           `json:"exemplar"`
	Datasource *DatasourceRef `json:"datasource"`
}

// Variable is a templating variable.
type Variable struct {
	Name       string          `json:"name"`
	Type       string          `json:"type"`
	Datasource *DatasourceRef  `json:"datasource"`
	Query      json.RawMessage `json:"query"`
	Definition string          `json:"definition"`
	Multi      bool            `json:"multi"`
	IncludeAll bool            `json:"includeAll"`
	Current    struct {
		Value json.RawMessage `json:"value"`
	} `json:"current"`
}

// QueryString returns the variable's query whether the JSON holds it as a
// string or as {"query": "..."} (Grafana ≥ 9).
func (v Variable) QueryString() string {
	var s string
	if json.Unmarshal(v.Query, &s) == nil {
		return s
	}
	var o struct {
		Query string `json:"query"`
	}
	if json.Unmarshal(v.Query, &o) == nil && o.Query != "" {
		return o.Query
	}
	return v.Definition
}

// LoadDashboard reads and decodes one dashboard JSON file.
func LoadDashboard(path string) (*Dashboard, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading dashboard: %w", err)
	}
	var d Dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, fmt.Errorf("decoding dashboard %s: %w", path, err)
	}
	d.File = path
	return &d, nil
}

// LoadDashboards reads every *.json file of dir.
func LoadDashboards(dir string) ([]*Dashboard, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return nil, fmt.Errorf("listing dashboards: %w", err)
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no dashboard JSON in %s", dir)
	}
	sort.Strings(files)
	var out []*Dashboard
	for _, f := range files {
		d, err := LoadDashboard(f)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, nil
}

// AllPanels returns every panel, rows' nested panels included, rows too.
func (d *Dashboard) AllPanels() []Panel {
	var out []Panel
	var walk func([]Panel)
	walk = func(ps []Panel) {
		for _, p := range ps {
			out = append(out, p)
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	return out
}

// Query is one PromQL expression of a dashboard, with where it comes from.
type Query struct {
	Dashboard string
	PanelID   int
	Panel     string
	RefID     string
	Expr      string
}

func (q Query) String() string {
	return fmt.Sprintf("%s / panel %d %q / %s", q.Dashboard, q.PanelID, q.Panel, q.RefID)
}

// Queries returns every target expression of every panel.
func (d *Dashboard) Queries() []Query {
	var out []Query
	for _, p := range d.AllPanels() {
		for _, t := range p.Targets {
			out = append(out, Query{Dashboard: d.Title, PanelID: p.ID, Panel: p.Title, RefID: t.RefID, Expr: t.Expr})
		}
	}
	return out
}

// Grafana's global variables and the values used to run a query outside
// Grafana (the live test): a rate window that always holds several scrapes.
var globalVars = map[string]string{
	"__rate_interval": "1m",
	"__interval":      "15s",
	"__range":         "5m",
}

var varRef = regexp.MustCompile(`\$\{([A-Za-z0-9_]+)(?::[A-Za-z]+)?\}|\[\[([A-Za-z0-9_]+)\]\]|\$([A-Za-z0-9_]+)`)

// VariableRefs returns the names of the variables expr uses ($x, ${x}, [[x]]).
func VariableRefs(expr string) []string {
	var out []string
	for _, m := range varRef.FindAllStringSubmatch(expr, -1) {
		name := m[1] + m[2] + m[3]
		if !slices.Contains(out, name) {
			out = append(out, name)
		}
	}
	return out
}

// Substitute replaces dashboard variables (vars) and Grafana's global
// interval variables in expr. Unknown variables are left as they are, so a
// query that still holds a `$` is invalid PromQL and fails loudly.
func Substitute(expr string, vars map[string]string) string {
	return varRef.ReplaceAllStringFunc(expr, func(s string) string {
		m := varRef.FindStringSubmatch(s)
		name := m[1] + m[2] + m[3]
		if v, ok := vars[name]; ok {
			return v
		}
		if v, ok := globalVars[name]; ok {
			return v
		}
		return s
	})
}

var (
	quoted     = regexp.MustCompile("\"(?:[^\"\\\\]|\\\\.)*\"|'(?:[^'\\\\]|\\\\.)*'|`[^`]*`")
	metricName = regexp.MustCompile(`(?:^|[^A-Za-z0-9_:])((?:cqrsflow_|up\b)[A-Za-z0-9_:]*)`)
	rangeSel   = regexp.MustCompile(`\[([^\]]*)\]`)
)

// MetricNames returns the cqrsflow_* metric names and `up` used in expr
// (string literals, e.g. label values, are ignored).
func MetricNames(expr string) []string {
	stripped := quoted.ReplaceAllString(expr, `""`)
	var out []string
	for _, m := range metricName.FindAllStringSubmatch(stripped, -1) {
		if !slices.Contains(out, m[1]) {
			out = append(out, m[1])
		}
	}
	sort.Strings(out)
	return out
}

// RangeSelectors returns the contents of every [..] range in expr.
func RangeSelectors(expr string) []string {
	var out []string
	for _, m := range rangeSel.FindAllStringSubmatch(quoted.ReplaceAllString(expr, `""`), -1) {
		out = append(out, m[1])
	}
	return out
}

// Selectors returns every cqrsflow_* / up selector of expr as written,
// with its {matchers} when it has them (string literals are not searched
// for metric names).
func Selectors(expr string) []string {
	// Same-length blanking keeps the offsets of the original expression.
	blank := quoted.ReplaceAllStringFunc(expr, func(s string) string { return strings.Repeat("_", len(s)) })
	var out []string
	for _, m := range metricName.FindAllStringSubmatchIndex(blank, -1) {
		start, end := m[2], m[3]
		if end < len(blank) && blank[end] == '{' {
			if closing := strings.IndexByte(blank[end:], '}'); closing >= 0 {
				end += closing + 1
			}
		}
		out = append(out, expr[start:end])
	}
	return out
}
