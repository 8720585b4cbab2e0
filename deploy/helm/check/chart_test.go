package check

import (
	"path/filepath"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/lint"
	"helm.sh/helm/v3/pkg/lint/support"
)

const chartDir = "../cqrsflow"

func loadChart(t *testing.T) *chart.Chart {
	t.Helper()
	ch, err := loader.Load(chartDir)
	if err != nil {
		t.Fatalf("loading the chart: %v", err)
	}
	return ch
}

// ciValuesFiles are the values files CI renders the chart with.
func ciValuesFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(chartDir, "ci", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 3 {
		t.Fatalf("want at least 3 values files in %s/ci (default, external secured, minimal), found %v", chartDir, files)
	}
	return files
}

func readValues(t *testing.T, file string) map[string]any {
	t.Helper()
	v, err := chartutil.ReadValuesFile(file)
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return v.AsMap()
}

// rendered is one values file's render: the objects and the values the
// templates saw (chart defaults coalesced with the file).
type rendered struct {
	file   string
	objs   []Object
	values map[string]any
}

func renderFile(t *testing.T, ch *chart.Chart, file string) rendered {
	t.Helper()
	user := readValues(t, file)
	objs, err := Render(ch, user)
	if err != nil {
		t.Fatalf("%s: %v", filepath.Base(file), err)
	}
	merged, err := chartutil.CoalesceValues(ch, user)
	if err != nil {
		t.Fatal(err)
	}
	return rendered{file: filepath.Base(file), objs: objs, values: merged.AsMap()}
}

func renderAll(t *testing.T) []rendered {
	t.Helper()
	ch := loadChart(t)
	var out []rendered
	for _, f := range ciValuesFiles(t) {
		out = append(out, renderFile(t, ch, f))
	}
	return out
}

// TestChartLint is `helm lint --strict` for every CI values file: any
// warning or error fails.
func TestChartLint(t *testing.T) {
	kv, err := chartutil.ParseKubeVersion("v1.31.0")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range ciValuesFiles(t) {
		linter := lint.AllWithKubeVersion(chartDir, readValues(t, f), Release.Namespace, kv)
		for _, m := range linter.Messages {
			if m.Severity > support.InfoSev {
				t.Errorf("%s: %s", filepath.Base(f), m)
			} else {
				t.Logf("%s: %s", filepath.Base(f), m)
			}
		}
	}
}

// TestChartRendersStrictly renders every CI values file and decodes every
// object strictly (Render fails on the first unknown field or kind).
func TestChartRendersStrictly(t *testing.T) {
	for _, r := range renderAll(t) {
		counts := map[string]int{}
		for _, o := range r.objs {
			counts[o.Kind]++
		}
		if counts["apps/v1/Deployment"] < 3 {
			t.Errorf("%s: %d Deployments, want api, outbox-relay and one per projection", r.file, counts["apps/v1/Deployment"])
		}
		t.Logf("%s: %d objects %v", r.file, len(r.objs), counts)
	}
}

func TestSplitManifests(t *testing.T) {
	in := "# Source: x.yaml\n---\n# only a comment\n---\napiVersion: v1\nkind: Service\n---\n\n---\napiVersion: v1\nkind: ConfigMap\ndata:\n  a: \"---x\"\n"
	docs := SplitManifests(in)
	if len(docs) != 2 || !strings.Contains(string(docs[0]), "Service") || !strings.Contains(string(docs[1]), "---x") {
		t.Fatalf("got %d documents: %q", len(docs), docs)
	}
}
