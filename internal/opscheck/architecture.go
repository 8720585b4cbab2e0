package opscheck

import (
	"bufio"
	"fmt"
	"os"
	"strings"
)

// Table is a Markdown table between `<!-- name:begin -->` and
// `<!-- name:end -->` in a document: its rows, each a list of cells with
// surrounding spaces and backquotes removed.
func Table(path, name string) ([][]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	begin, end := "<!-- "+name+":begin -->", "<!-- "+name+":end -->"
	var rows [][]string
	in, found := false, false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == begin:
			in, found = true, true
		case line == end:
			in = false
		case in && strings.HasPrefix(line, "|"):
			cells := splitRow(line)
			if len(rows) == 0 || !strings.HasPrefix(cells[0], "---") {
				rows = append(rows, cells)
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if !found || len(rows) < 2 {
		return nil, fmt.Errorf("%s: no %q table", path, name)
	}
	return rows[1:], nil // without the header row
}

// splitRow splits a table row into its cells; `\|` is a pipe inside a
// cell, as Markdown has it.
func splitRow(line string) []string {
	line = strings.TrimSuffix(strings.TrimPrefix(line, "|"), "|")
	var cells []string
	var cell strings.Builder
	for i := 0; i < len(line); i++ {
		switch {
		case line[i] == '\\' && i+1 < len(line) && line[i+1] == '|':
			cell.WriteByte('|')
			i++
		case line[i] == '|':
			cells = append(cells, cell.String())
			cell.Reset()
		default:
			cell.WriteByte(line[i])
		}
	}
	cells = append(cells, cell.String())
	for i, c := range cells {
		cells[i] = strings.Trim(strings.TrimSpace(c), "`")
	}
	return cells
}

// Metric is one row of the metric table of docs/architecture.md.
type Metric struct {
	Name, Type string
	Labels     []string
	Overview   bool // the overview dashboard must show it
}

// Metrics reads the metric contract from the architecture document.
func Metrics(path string) (map[string]Metric, error) {
	rows, err := Table(path, "metrics")
	if err != nil {
		return nil, err
	}
	out := map[string]Metric{}
	for _, r := range rows {
		if len(r) != 5 {
			return nil, fmt.Errorf("%s: metric row %v: want 5 cells", path, r)
		}
		m := Metric{Name: r[0], Type: r[1], Overview: r[4] == "yes"}
		for _, l := range strings.Split(r[2], ",") {
			if l = strings.TrimSpace(l); l != "" {
				m.Labels = append(m.Labels, l)
			}
		}
		switch m.Type {
		case "counter", "gauge", "histogram":
		default:
			return nil, fmt.Errorf("%s: metric %s: type %q", path, m.Name, m.Type)
		}
		if _, dup := out[m.Name]; dup {
			return nil, fmt.Errorf("%s: metric %s listed twice", path, m.Name)
		}
		out[m.Name] = m
	}
	return out, nil
}

// ImportRule is one row of the package map: the package (or subtree) and
// the cqrsflow packages it may import.
type ImportRule struct {
	Package string
	Allowed []string
}

// ImportRules reads the package map from the architecture document.
func ImportRules(path string) ([]ImportRule, error) {
	rows, err := Table(path, "packages")
	if err != nil {
		return nil, err
	}
	var out []ImportRule
	for _, r := range rows {
		if len(r) != 3 {
			return nil, fmt.Errorf("%s: package row %v: want 3 cells", path, r)
		}
		rule := ImportRule{Package: r[0]}
		for _, a := range strings.Split(r[2], ",") {
			if a = strings.TrimSpace(a); a != "" {
				rule.Allowed = append(rule.Allowed, a)
			}
		}
		out = append(out, rule)
	}
	return out, nil
}

// matches reports whether pkg (module-relative, e.g. internal/relay) is
// pattern: a path, or a path ending in "…" that also covers everything
// below it.
func matches(pattern, pkg string) bool {
	base, tree := strings.CutSuffix(pattern, "…")
	base = strings.TrimSuffix(base, "/")
	if !tree {
		return pkg == base
	}
	return pkg == base || strings.HasPrefix(pkg, base+"/")
}

// RuleFor returns the most specific rule covering pkg.
func RuleFor(rules []ImportRule, pkg string) (ImportRule, bool) {
	var best ImportRule
	found := false
	for _, r := range rules {
		if matches(r.Package, pkg) && (!found || len(r.Package) > len(best.Package) || !strings.HasSuffix(r.Package, "…")) {
			if found && !strings.HasSuffix(best.Package, "…") {
				continue // an exact row already won
			}
			best, found = r, true
		}
	}
	return best, found
}

// Allows reports whether the rule lets its package import imp.
func (r ImportRule) Allows(imp string) bool {
	for _, a := range r.Allowed {
		if matches(a, imp) {
			return true
		}
	}
	return false
}
