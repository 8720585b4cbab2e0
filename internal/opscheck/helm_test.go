package opscheck

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// The Helm chart (deploy/helm/cqrsflow) is rendered and decoded by its own
// Go module, deploy/helm/check (`make test-helm`), which cannot import
// this one. What it needs from here is kept in files this test keeps
// current, so there is one source for each.

const (
	chartDir      = "deploy/helm/cqrsflow"
	binaryEnvFile = "deploy/helm/check/testdata/binary-env.json"
)

// binaryEnvJSON is the env vars each binary reads, as the chart check
// reads them (sorted names per binary).
func binaryEnvJSON(t *testing.T) []byte {
	t.Helper()
	out := map[string][]string{}
	for _, bin := range []string{"api", "outbox-relay", "projector"} {
		var names []string
		for name := range binaryEnv(t, bin) {
			names = append(names, name)
		}
		slices.Sort(names)
		out[bin] = names
	}
	b, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return append(b, '\n')
}

// TestHelmCheckBinaryEnvUpToDate: the chart check's list of the env vars
// each binary reads matches the binaries' registrations. Regenerate with
// UPDATE_HELM_CHECK=1 go test ./internal/opscheck -run TestHelmCheckBinaryEnvUpToDate.
func TestHelmCheckBinaryEnvUpToDate(t *testing.T) {
	want := binaryEnvJSON(t)
	path := filepath.Join(repoRoot, binaryEnvFile)
	if os.Getenv("UPDATE_HELM_CHECK") == "1" {
		if err := os.WriteFile(path, want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s is stale (a binary's settings changed): run UPDATE_HELM_CHECK=1 go test ./internal/opscheck -run TestHelmCheckBinaryEnvUpToDate", binaryEnvFile)
	}
}

// TestHelmChartCopiesInSync: the chart packages copies of the alert rules
// and the dashboards (Helm reads files only inside the chart); they must
// be the files of deploy/prometheus/rules and deploy/grafana/dashboards.
func TestHelmChartCopiesInSync(t *testing.T) {
	for _, c := range []struct{ src, dst, glob string }{
		{"deploy/prometheus/rules", chartDir + "/files/rules", "*.yml"},
		{"deploy/grafana/dashboards", chartDir + "/files/dashboards", "*.json"},
	} {
		src := globBase(t, filepath.Join(repoRoot, c.src, c.glob))
		dst := globBase(t, filepath.Join(repoRoot, c.dst, c.glob))
		if len(src) == 0 || !slices.Equal(src, dst) {
			t.Errorf("%s holds %v, %s holds %v: want the same files", c.src, src, c.dst, dst)
			continue
		}
		for _, name := range src {
			a, errA := os.ReadFile(filepath.Join(repoRoot, c.src, name))
			b, errB := os.ReadFile(filepath.Join(repoRoot, c.dst, name))
			if errA != nil || errB != nil {
				t.Fatal(errA, errB)
			}
			if !bytes.Equal(a, b) {
				t.Errorf("%s/%s differs from %s/%s: cp %s/%s %s/", c.dst, name, c.src, name, c.src, name, c.dst)
			}
		}
	}
}

func globBase(t *testing.T, pattern string) []string {
	t.Helper()
	files, err := filepath.Glob(pattern)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, f := range files {
		out = append(out, filepath.Base(f))
	}
	slices.Sort(out)
	return out
}
