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

// TestChartRefusesBadValues: values that would leak a secret or deploy
// something broken fail the render with a message naming the setting.
func TestChartRefusesBadValues(t *testing.T) {
	ch := loadChart(t)
	cases := []struct {
		name   string
		values string
		wants  string
	}{
		{"secret as a plain env value", "api: {env: {API_KEYS: k1}}", "env.API_KEYS: a secret is never a value"},
		{"postgres url in relay env", "relay: {env: {POSTGRES_URL: 'postgres://u:p@db/x'}}", "env.POSTGRES_URL"},
		{"no postgres secret", "postgres: {urlSecret: {name: ''}}", "postgres.urlSecret.name is required"},
		{"projection not a DNS label", "projector: {projections: [{name: Products_1}]}", "must be a DNS label"},
		{"no projection", "projector: {projections: []}", "at least one projection"},
		{"floor above the partitions", "projector: {projections: [{name: p, partitions: 2, minReplicas: 3}]}", "minReplicas 3 above the cap 2"},
		{"unknown SASL mechanism", "kafka: {sasl: {mechanism: GSSAPI, username: u, passwordSecret: {name: s}}}", "kafka.sasl.mechanism"},
		{"SASL without password secret", "kafka: {sasl: {mechanism: PLAIN, username: u}}", "kafka.sasl.passwordSecret.name is required"},
		{"two Elasticsearch auths", "elasticsearch: {apiKeySecret: {name: a}, username: u, passwordSecret: {name: p}}", "not both"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			vals, err := chartutil.ReadValues([]byte(tc.values))
			if err != nil {
				t.Fatal(err)
			}
			_, err = Render(ch, vals.AsMap())
			if err == nil || !strings.Contains(err.Error(), tc.wants) {
				t.Fatalf("want a render error containing %q, got %v", tc.wants, err)
			}
		})
	}
}

// TestDecodeStrictRejects: a field the Kubernetes type does not have, a
// wrong type, a duplicate key or an unchecked kind fails the decode.
func TestDecodeStrictRejects(t *testing.T) {
	const good = "apiVersion: v1\nkind: Service\nmetadata:\n  name: s\nspec:\n  ports:\n    - port: 80\n"
	if _, err := DecodeStrict("s.yaml", []byte(good)); err != nil {
		t.Fatalf("valid Service: %v", err)
	}
	cases := []struct{ name, from, to, wants string }{
		{"unknown field", "ports:", "portz:", `unknown field "portz"`},
		{"wrong type", "port: 80", "port: eighty", "port"},
		{"duplicate key", "  name: s\n", "  name: s\n  name: t\n", "already set"},
		{"unchecked kind", "kind: Service", "kind: Secret", "a kind the check does not know"},
		{"no name", "  name: s\n", "  labels: {}\n", "without metadata.name"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodeStrict("s.yaml", []byte(strings.Replace(good, tc.from, tc.to, 1)))
			if err == nil || !strings.Contains(err.Error(), tc.wants) {
				t.Fatalf("want an error containing %q, got %v", tc.wants, err)
			}
		})
	}
}
