package opscheck

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

var (
	heading  = regexp.MustCompile(`(?m)^#{1,6}\s+(.+?)\s*$`)
	mdAnchor = regexp.MustCompile(`\]\(#([^)]+)\)`)
	notSlug  = regexp.MustCompile(`[^\p{L}\p{N} _-]`)
)

// slug is GitHub's heading anchor: lower case, punctuation dropped, spaces
// to dashes.
func slug(h string) string {
	h = strings.ToLower(strings.TrimSpace(h))
	h = notSlug.ReplaceAllString(h, "")
	return strings.ReplaceAll(h, " ", "-")
}

func runbookAnchors(t *testing.T) (map[string]bool, string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, "docs/operations.md"))
	if err != nil {
		t.Fatal(err)
	}
	anchors := map[string]bool{}
	for _, m := range heading.FindAllStringSubmatch(string(b), -1) {
		anchors[slug(m[1])] = true
	}
	return anchors, string(b)
}

type alertRule struct {
	Alert       string            `yaml:"alert"`
	Record      string            `yaml:"record"`
	Expr        string            `yaml:"expr"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

func loadAlertRules(t *testing.T) []alertRule {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(repoRoot, "deploy/prometheus/rules/*.yml"))
	if len(files) == 0 {
		t.Fatal("no rule files in deploy/prometheus/rules")
	}
	var out []alertRule
	for _, f := range files {
		var doc struct {
			Groups []struct {
				Rules []alertRule `yaml:"rules"`
			} `yaml:"groups"`
		}
		readYAML(t, f, &doc)
		for _, g := range doc.Groups {
			out = append(out, g.Rules...)
		}
	}
	return out
}

func TestAlertsHaveRunbookSections(t *testing.T) {
	contract := contractMetrics(t)
	anchors, _ := runbookAnchors(t)
	n := 0
	for _, r := range loadAlertRules(t) {
		if r.Alert == "" {
			continue
		}
		n++
		if s := r.Labels["severity"]; s != "critical" && s != "warning" {
			t.Errorf("%s: severity %q, want critical or warning", r.Alert, s)
		}
		for _, a := range []string{"summary", "description", "runbook_url"} {
			if strings.TrimSpace(r.Annotations[a]) == "" {
				t.Errorf("%s: no %s annotation", r.Alert, a)
			}
		}
		want := "docs/operations.md#" + strings.ToLower(r.Alert)
		if r.Annotations["runbook_url"] != want {
			t.Errorf("%s: runbook_url %q, want %q", r.Alert, r.Annotations["runbook_url"], want)
		}
		if !anchors[strings.ToLower(r.Alert)] {
			t.Errorf("%s: docs/operations.md has no heading %q", r.Alert, r.Alert)
		}
		for _, m := range MetricNames(r.Expr) {
			if _, ok := contractFamily(contract, m); !ok {
				t.Errorf("%s: metric %s is not in the metric table of docs/architecture.md", r.Alert, m)
			}
		}
	}
	if n < 10 {
		t.Fatalf("only %d alerts found", n)
	}
}

func TestRunbookLinksResolve(t *testing.T) {
	anchors, text := runbookAnchors(t)
	for _, m := range mdAnchor.FindAllStringSubmatch(text, -1) {
		if !anchors[m[1]] {
			t.Errorf("docs/operations.md links to #%s, which is no heading", m[1])
		}
	}
}

func TestSlug(t *testing.T) {
	for in, want := range map[string]string{
		"CqrsflowProjectorDLQ":             "cqrsflowprojectordlq",
		"Replay and rebuild":               "replay-and-rebuild",
		"cqrsflow — pipeline overview":     "cqrsflow--pipeline-overview",
		"With Docker":                      "with-docker",
		"Where things are (local/compose)": "where-things-are-localcompose",
	} {
		if got := slug(in); got != want {
			t.Errorf("slug(%q) = %q, want %q", in, got, want)
		}
	}
}
