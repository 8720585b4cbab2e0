//go:build opslive

// Live dashboard checks, run by `make test-dashboards` (build tag opslive):
// the PromQL of every panel against the real local Prometheus scraping the
// running pipeline under load. They need `make run` (RUN_DETACH=1) and
// `make demo` running; the make target starts both.
package opscheck

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

func prometheusURL() string {
	if u := os.Getenv("PROMETHEUS_URL"); u != "" {
		return strings.TrimRight(u, "/")
	}
	return "http://127.0.0.1:9090"
}

func liveWait(t *testing.T) time.Duration {
	t.Helper()
	if s := os.Getenv("LIVE_WAIT"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatalf("LIVE_WAIT=%q: %v", s, err)
		}
		return d
	}
	return 120 * time.Second
}

type promResponse struct {
	Status    string          `json:"status"`
	ErrorType string          `json:"errorType"`
	Error     string          `json:"error"`
	Data      json.RawMessage `json:"data"`
}

type promSample struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"`
}

// promGet calls the Prometheus HTTP API; a bad_data answer (invalid PromQL)
// comes back as an error, not as an empty result.
func promGet(ctx context.Context, path string, q url.Values) (json.RawMessage, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, prometheusURL()+path+"?"+q.Encode(), nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("prometheus at %s unreachable (run `make run`): %w", prometheusURL(), err)
	}
	defer resp.Body.Close()
	var pr promResponse
	if err := json.NewDecoder(resp.Body).Decode(&pr); err != nil {
		return nil, fmt.Errorf("decoding %s answer (HTTP %d): %w", path, resp.StatusCode, err)
	}
	if pr.Status != "success" {
		return nil, fmt.Errorf("%s: %s", pr.ErrorType, pr.Error)
	}
	return pr.Data, nil
}

func instantQuery(ctx context.Context, expr string) ([]promSample, error) {
	data, err := promGet(ctx, "/api/v1/query", url.Values{"query": {expr}})
	if err != nil {
		return nil, err
	}
	var v struct {
		ResultType string       `json:"resultType"`
		Result     []promSample `json:"result"`
	}
	if err := json.Unmarshal(data, &v); err != nil {
		return nil, fmt.Errorf("decoding query result: %w", err)
	}
	if v.ResultType != "vector" {
		return nil, fmt.Errorf("result type %s, want vector", v.ResultType)
	}
	return v.Result, nil
}

// waitForTargets waits until every pipeline job has its targets up.
func waitForTargets(t *testing.T, ctx context.Context, deadline time.Time) {
	t.Helper()
	want := map[string]int{"api": 1, "outbox-relay": 1, "projector": 2}
	for {
		res, err := instantQuery(ctx, `up{job=~"api|outbox-relay|projector"}`)
		up := map[string]int{}
		var down []string
		if err == nil {
			for _, s := range res {
				if s.Value[1] == "1" {
					up[s.Metric["job"]]++
				} else {
					down = append(down, s.Metric["job"]+"/"+s.Metric["instance"])
				}
			}
		}
		ok := err == nil
		for job, n := range want {
			if up[job] < n {
				ok = false
			}
		}
		if ok {
			t.Logf("targets up: %v", up)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("pipeline targets not all up after waiting: up=%v down=%v err=%v (want %v; start with `make run`)", up, down, err, want)
		}
		time.Sleep(2 * time.Second)
	}
}

var labelValuesRe = regexp.MustCompile(`^label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?)\s*,\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)$`)

// variableValues resolves a label_values(metric, label) variable query
// against Prometheus, as Grafana does.
func variableValues(ctx context.Context, name, query string) ([]string, error) {
	m := labelValuesRe.FindStringSubmatch(strings.TrimSpace(query))
	if m == nil {
		return nil, fmt.Errorf("variable %s: only label_values(metric, label) is supported, got %q", name, query)
	}
	data, err := promGet(ctx, "/api/v1/label/"+m[2]+"/values", url.Values{"match[]": {m[1]}})
	if err != nil {
		return nil, err
	}
	var vals []string
	if err := json.Unmarshal(data, &vals); err != nil {
		return nil, err
	}
	return vals, nil
}

func TestLiveDashboardQueries(t *testing.T) {
	ctx := context.Background()
	deadline := time.Now().Add(liveWait(t))
	waitForTargets(t, ctx, deadline)

	dashboards := loadDashboards(t)

	// Every metric the dashboards use exists in Prometheus.
	data, err := promGet(ctx, "/api/v1/label/__name__/values", nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	if err := json.Unmarshal(data, &names); err != nil {
		t.Fatal(err)
	}

	type run struct {
		q    Query
		expr string
	}
	var runs []run
	var usedMetrics []string
	for _, d := range dashboards {
		// Resolve the variables (bounded wait: projections report after start).
		varSets := []map[string]string{{}}
		for _, v := range d.Templating.List {
			switch v.Type {
			case "datasource":
				continue // the test sends every query to the local Prometheus
			case "constant":
				for _, set := range varSets {
					set[v.Name] = v.QueryString()
				}
				continue
			case "query":
			default:
				t.Fatalf("%s: variable %s of type %s not supported by the live test", d.Title, v.Name, v.Type)
			}
			// A variable's query may use the variables before it; the
			// multi-value ones are All in every set, so any set will do.
			query := Substitute(v.QueryString(), varSets[0])
			var vals []string
			for {
				vals, err = variableValues(ctx, v.Name, query)
				if err != nil {
					t.Fatalf("%s: %v", d.Title, err)
				}
				if len(vals) > 0 || time.Now().After(deadline) {
					break
				}
				time.Sleep(2 * time.Second)
			}
			if len(vals) == 0 {
				t.Fatalf("%s: variable %s has no values (%s)", d.Title, v.Name, v.QueryString())
			}
			t.Logf("%s: $%s = %v", d.Title, v.Name, vals)
			if v.Multi && v.IncludeAll {
				// The dashboards open with All selected: one run with
				// every value, as Grafana writes a multi-value for a regex
				// matcher.
				for _, set := range varSets {
					set[v.Name] = allValue(vals)
				}
				continue
			}
			var next []map[string]string
			for _, set := range varSets {
				for _, val := range vals {
					n := map[string]string{v.Name: val}
					for k, x := range set {
						n[k] = x
					}
					next = append(next, n)
				}
			}
			varSets = next
		}
		for _, q := range d.Queries() {
			for _, m := range MetricNames(q.Expr) {
				if !slices.Contains(usedMetrics, m) {
					usedMetrics = append(usedMetrics, m)
				}
			}
			for _, set := range varSets {
				runs = append(runs, run{q: q, expr: Substitute(q.Expr, set)})
			}
		}
	}
	sort.Strings(usedMetrics)
	for _, m := range usedMetrics {
		if !slices.Contains(names, m) {
			t.Errorf("metric %s used by a dashboard does not exist in Prometheus", m)
		}
	}

	// Run every query; retry the empty ones until the deadline (rates need
	// a few scrapes of traffic), fail at once on invalid PromQL.
	pending := runs
	for {
		var still []run
		for i, r := range pending {
			res, err := instantQuery(ctx, r.expr)
			if err != nil {
				t.Errorf("%s: invalid query %q: %v", r.q, r.expr, err)
				continue
			}
			if len(res) == 0 {
				still = append(still, pending[i])
				continue
			}
			t.Logf("data: %-70s %2d series  %s", r.q.String(), len(res), sampleText(res))
		}
		pending = still
		if len(pending) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Second)
	}
	for _, r := range pending {
		t.Errorf("%s: query returned no series: %s", r.q, r.expr)
	}
	t.Logf("%d queries run (variables substituted), %d without data", len(runs), len(pending))
}

func sampleText(res []promSample) string {
	var parts []string
	for i, s := range res {
		if i == 3 {
			parts = append(parts, "…")
			break
		}
		labels := make([]string, 0, len(s.Metric))
		for k, v := range s.Metric {
			labels = append(labels, k+"="+v)
		}
		sort.Strings(labels)
		parts = append(parts, fmt.Sprintf("{%s}=%v", strings.Join(labels, ","), s.Value[1]))
	}
	return strings.Join(parts, " ")
}

// TestLiveDashboardQueriesParse checks every panel's PromQL with
// Prometheus's own parser (promtool check rules on a generated rule file),
// without needing a running Prometheus.
func TestLiveDashboardQueriesParse(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal("promtool not found: run `deploy/local/prometheus.sh install`")
	}
	type rule struct {
		Record string `yaml:"record"`
		Expr   string `yaml:"expr"`
	}
	var rules []rule
	vars := map[string]string{"projection": "products"}
	for _, d := range loadDashboards(t) {
		for _, q := range d.Queries() {
			rules = append(rules, rule{
				Record: fmt.Sprintf("dashboard:%s_panel%d_%s", strings.ReplaceAll(d.UID, "-", "_"), q.PanelID, q.RefID),
				Expr:   Substitute(q.Expr, vars),
			})
		}
	}
	doc := map[string]any{"groups": []any{map[string]any{"name": "dashboards", "rules": rules}}}
	b, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "dashboards.rules.yml")
	if err := os.WriteFile(f, b, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(promtool, "check", "rules", f).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool rejects dashboard PromQL: %v\n%s", err, out)
	}
	t.Logf("promtool: %d dashboard queries parse: %s", len(rules), strings.TrimSpace(string(out)))
}

// allValue is a multi-value variable with every value selected, as
// Grafana writes it into a Prometheus regex matcher: (a|b|c) with each
// value regex-escaped, the backslashes escaped again for the PromQL
// string.
func allValue(vals []string) string {
	quoted := make([]string, len(vals))
	for i, v := range vals {
		quoted[i] = strings.ReplaceAll(regexp.QuoteMeta(v), `\`, `\\`)
	}
	return "(" + strings.Join(quoted, "|") + ")"
}
