package check

import (
	"encoding/json"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	corev1 "k8s.io/api/core/v1"
)

// TestRunbookLinksUseTheConfiguredBase: every alert's runbook_url and
// every dashboard's runbook_base is monitoring.runbookBaseURL, so the
// links of an install point at its own copy of docs/operations.md.
func TestRunbookLinksUseTheConfiguredBase(t *testing.T) {
	checked := 0
	for _, r := range renderAll(t) {
		base := strings.TrimSuffix(r.values["monitoring"].(map[string]any)["runbookBaseURL"].(string), "/")
		for _, pr := range find[*monitoringv1.PrometheusRule](r.objs) {
			for _, g := range pr.Spec.Groups {
				for _, rule := range g.Rules {
					if rule.Alert == "" {
						continue
					}
					checked++
					if u := rule.Annotations["runbook_url"]; !strings.HasPrefix(u, base+"#") {
						t.Errorf("%s: alert %s runbook_url %q, want %s#…", r.file, rule.Alert, u, base)
					}
				}
			}
		}
		for _, cm := range find[*corev1.ConfigMap](r.objs) {
			for name, text := range cm.Data {
				var d struct {
					Templating struct {
						List []struct {
							Name  string          `json:"name"`
							Query json.RawMessage `json:"query"`
						} `json:"list"`
					} `json:"templating"`
				}
				if err := json.Unmarshal([]byte(text), &d); err != nil {
					t.Errorf("%s: ConfigMap %s key %s is no dashboard JSON: %v", r.file, cm.Name, name, err)
					continue
				}
				found := false
				for _, v := range d.Templating.List {
					if v.Name == "runbook_base" {
						found = true
						checked++
						var q string
						if err := json.Unmarshal(v.Query, &q); err != nil || q != base {
							t.Errorf("%s: dashboard %s runbook_base %s, want %q", r.file, name, v.Query, base)
						}
					}
				}
				if !found {
					t.Errorf("%s: dashboard %s has no runbook_base variable", r.file, name)
				}
			}
		}
	}
	if checked == 0 {
		t.Fatal("no alert rules nor dashboards rendered by any ci/ values file")
	}
}
