package opscheck

import (
	"fmt"
	"slices"
	"strings"
)

// Lint checks a dashboard's structure. The rules follow Grafana's
// dashboard-linter where they apply (its module is not fetchable from the
// Go proxy here):
//
//   - dashboard: uid, title, "cqrsflow" tag, schemaVersion ≥ 36; when
//     datasourceUID is a variable (${name}), a datasource variable of
//     that name for Prometheus (template-datasource-rule), and job and
//     instance query variables (template-job-rule, template-instance-rule)
//   - panels: unique ids, title and description, datasource =
//     datasourceUID, at least one target (rows excepted), a unit, a grid
//     position inside the 24 columns, no two panels overlapping
//   - targets: unique refId per panel, non-empty expr, datasource (when
//     set) = datasourceUID, every [range] is $__rate_interval
//     (target-rate-interval-rule), every variable used is defined, every
//     selector filters on $job and $instance (target-job-rule,
//     target-instance-rule)
//   - variables: query variables use datasourceUID and have a query
//
// It returns one line per problem; none means clean.
func Lint(d *Dashboard, datasourceUID string) []string {
	var probs []string
	add := func(format string, args ...any) {
		probs = append(probs, fmt.Sprintf(format, args...))
	}
	if d.UID == "" {
		add("dashboard has no uid")
	}
	if d.Title == "" {
		add("dashboard has no title")
	}
	if !slices.Contains(d.Tags, "cqrsflow") {
		add("dashboard is not tagged cqrsflow")
	}
	if d.SchemaVersion < 36 {
		add("schemaVersion %d < 36 (pre-Grafana 9 model)", d.SchemaVersion)
	}

	vars := map[string]bool{}
	types := map[string]Variable{}
	for _, v := range d.Templating.List {
		types[v.Name] = v
		if v.Name == "" {
			add("a template variable has no name")
			continue
		}
		if vars[v.Name] {
			add("template variable %q defined twice", v.Name)
		}
		vars[v.Name] = true
		if v.Type == "query" {
			if v.Datasource == nil || v.Datasource.UID != datasourceUID {
				add("variable %q: datasource must be uid %q", v.Name, datasourceUID)
			}
			if strings.TrimSpace(v.QueryString()) == "" {
				add("variable %q has no query", v.Name)
			}
		}
	}

	probs = append(probs, lintTemplating(d, datasourceUID, types)...)

	ids := map[int]string{}
	taken := map[cell]int{}
	for _, p := range d.AllPanels() {
		where := fmt.Sprintf("panel %d %q", p.ID, p.Title)
		if p.ID <= 0 {
			add("%s: id must be > 0", where)
		} else if other, dup := ids[p.ID]; dup {
			add("%s: id %d already used by %q", where, p.ID, other)
		}
		ids[p.ID] = p.Title
		if p.Title == "" {
			add("%s: no title", where)
		}
		g := p.GridPos
		if g.W <= 0 || g.H <= 0 || g.X < 0 || g.Y < 0 || g.X+g.W > 24 {
			add("%s: gridPos %+v outside the 24-column grid", where, g)
		} else if o, x, y, ok := place(taken, p.ID, g); !ok {
			add("%s overlaps panel %d at x=%d y=%d", where, o, x, y)
		}
		if p.Type == "row" {
			continue
		}
		if p.Description == "" {
			add("%s: no description", where)
		}
		if p.Datasource == nil || p.Datasource.UID != datasourceUID || p.Datasource.Type != "prometheus" {
			add("%s: datasource must be {type: prometheus, uid: %q}", where, datasourceUID)
		}
		if p.FieldConfig.Defaults.Unit == "" {
			add("%s: no unit (fieldConfig.defaults.unit)", where)
		}
		if len(p.Targets) == 0 {
			add("%s: no targets", where)
		}
		probs = append(probs, lintTargets(p, where, datasourceUID, vars)...)
	}
	return probs
}

// lintTargets checks one panel's queries: refIds, datasource, ranges,
// variables, metrics, and the job/instance filters when the dashboard has
// those variables.
func lintTargets(p Panel, where, datasourceUID string, vars map[string]bool) []string {
	var probs []string
	add := func(format string, args ...any) {
		probs = append(probs, fmt.Sprintf(format, args...))
	}
	refs := map[string]bool{}
	for _, t := range p.Targets {
		tw := fmt.Sprintf("%s target %q", where, t.RefID)
		if t.RefID == "" || refs[t.RefID] {
			add("%s: refId empty or repeated", tw)
		}
		refs[t.RefID] = true
		if strings.TrimSpace(t.Expr) == "" {
			add("%s: empty expr", tw)
			continue
		}
		if t.Datasource != nil && t.Datasource.UID != datasourceUID {
			add("%s: datasource uid %q, want %q", tw, t.Datasource.UID, datasourceUID)
		}
		for _, r := range RangeSelectors(t.Expr) {
			if r != "$__rate_interval" {
				add("%s: range [%s] should be [$__rate_interval]", tw, r)
			}
		}
		for _, v := range VariableRefs(t.Expr) {
			if _, global := globalVars[v]; !global && !vars[v] {
				add("%s: uses undefined variable $%s", tw, v)
			}
		}
		if len(MetricNames(t.Expr)) == 0 {
			add("%s: expr uses no cqrsflow metric nor up", tw)
		}
		if vars["job"] && vars["instance"] {
			for _, sel := range Selectors(t.Expr) {
				if !strings.Contains(sel, `job=~"$job"`) || !strings.Contains(sel, `instance=~"$instance"`) {
					add("%s: selector %s does not filter on job=~\"$job\" and instance=~\"$instance\"", tw, sel)
				}
			}
		}
	}
	return probs
}

// lintTemplating checks the variables that make a dashboard portable: the
// datasource variable the panels use and the job/instance filters.
func lintTemplating(d *Dashboard, datasourceUID string, vars map[string]Variable) []string {
	var probs []string
	name, isVar := strings.CutPrefix(datasourceUID, "${")
	if !isVar {
		return nil
	}
	name = strings.TrimSuffix(name, "}")
	if v, ok := vars[name]; !ok || v.Type != "datasource" || v.QueryString() != "prometheus" {
		probs = append(probs, fmt.Sprintf("no datasource variable %q of type prometheus", name))
	}
	for _, want := range []string{"job", "instance"} {
		if v, ok := vars[want]; !ok || v.Type != "query" || !v.Multi || !v.IncludeAll {
			probs = append(probs, fmt.Sprintf("no multi-value query variable %q with All", want))
		}
	}
	return probs
}

type cell struct{ x, y int }

// place marks the panel's grid cells as taken; it reports the first cell
// another panel already holds.
func place(taken map[cell]int, id int, g GridPos) (other, x, y int, ok bool) {
	for x := g.X; x < g.X+g.W; x++ {
		for y := g.Y; y < g.Y+g.H; y++ {
			if o, dup := taken[cell{x, y}]; dup {
				return o, x, y, false
			}
			taken[cell{x, y}] = id
		}
	}
	return 0, 0, 0, true
}
