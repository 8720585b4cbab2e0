package opscheck

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

var architectureDoc = filepath.Join(repoRoot, "docs/architecture.md")

// TestPackageMapHoldsForEveryPackage: every package of the module has a
// row in the package map of docs/architecture.md, and imports only the
// cqrsflow packages its row allows (test files excluded).
func TestPackageMapHoldsForEveryPackage(t *testing.T) {
	rules, err := ImportRules(architectureDoc)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "list", "-f", "{{.ImportPath}} {{join .Imports \" \"}}", "./...")
	cmd.Dir = repoRoot
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	checked := 0
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		pkg := strings.TrimPrefix(fields[0], "cqrsflow/")
		rule, ok := RuleFor(rules, pkg)
		if !ok {
			t.Errorf("package %s has no row in the package map of docs/architecture.md", pkg)
			continue
		}
		for _, imp := range fields[1:] {
			imp, ours := strings.CutPrefix(imp, "cqrsflow/")
			if ours && imp != pkg && !rule.Allows(imp) {
				t.Errorf("%s imports %s, which its row (%s) in docs/architecture.md does not allow", pkg, imp, rule.Package)
			}
		}
		checked++
	}
	if checked < 20 {
		t.Fatalf("checked only %d packages: go list output %q", checked, out)
	}
}

func TestImportRuleMatching(t *testing.T) {
	rules := []ImportRule{
		{Package: "internal/domain/…", Allowed: []string{"internal/domain"}},
		{Package: "internal/domain", Allowed: nil},
		{Package: "bench…", Allowed: []string{"bench/…", "internal/…"}},
	}
	for _, tc := range []struct {
		pkg, imp  string
		rule      string
		allowed   bool
		haveARule bool
	}{
		{"internal/domain", "internal/envelope", "internal/domain", false, true},
		{"internal/domain/order", "internal/domain", "internal/domain/…", true, true},
		{"internal/domain/order", "internal/domainx", "internal/domain/…", false, true},
		{"bench/internal/stats", "internal/relay", "bench…", true, true},
		{"bench", "bench/loadgen", "bench…", true, true},
		{"chaos", "", "", false, false},
	} {
		r, ok := RuleFor(rules, tc.pkg)
		if ok != tc.haveARule || r.Package != tc.rule || (ok && tc.imp != "" && r.Allows(tc.imp) != tc.allowed) {
			t.Errorf("%s importing %s: rule %q (found %v), allows %v; want %q, %v", tc.pkg, tc.imp, r.Package, ok, r.Allows(tc.imp), tc.rule, tc.allowed)
		}
	}
}

func TestTableReadsTheMetricContract(t *testing.T) {
	m, err := Metrics(architectureDoc)
	if err != nil {
		t.Fatal(err)
	}
	h, ok := m["cqrsflow_http_request_duration_seconds"]
	if !ok || h.Type != "histogram" || !h.Overview || strings.Join(h.Labels, ",") != "route,method,code" {
		t.Fatalf("http histogram row: %+v (found %v)", h, ok)
	}
	if len(m) < 20 {
		t.Fatalf("only %d metrics read", len(m))
	}
}

func TestSplitRowKeepsEscapedPipes(t *testing.T) {
	got := splitRow("| `a` | b \\| c | d |")
	if len(got) != 3 || got[0] != "a" || got[1] != "b | c" || got[2] != "d" {
		t.Fatalf("splitRow = %q", got)
	}
}
