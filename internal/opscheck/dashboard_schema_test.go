package opscheck

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
	"github.com/grafana/grafana-foundation-sdk/go/stat"
	"github.com/grafana/grafana-foundation-sdk/go/table"
	"github.com/grafana/grafana-foundation-sdk/go/timeseries"
)

// strictPanelTypes are the panel plugins whose options and field config
// the strict decoder knows (registered below); a panel of another type
// would only be decoded loosely, so the dashboards may use no other.
var strictPanelTypes = []string{"row", "stat", "table", "timeseries"}

var registerVariants = sync.OnceFunc(func() {
	rt := cog.NewRuntime()
	rt.RegisterPanelcfgVariant(stat.VariantConfig())
	rt.RegisterPanelcfgVariant(table.VariantConfig())
	rt.RegisterPanelcfgVariant(timeseries.VariantConfig())
	rt.RegisterDataqueryVariant(prometheus.VariantConfig())
})

// decodeDashboardStrict decodes a dashboard JSON with the Grafana
// foundation SDK's strict decoder (generated from Grafana's dashboard
// schema): unknown fields, wrong types and missing required fields fail,
// down to the panels' options and the Prometheus queries. The SDK's
// strict Panel decoder reads fieldConfig loosely (all but its custom
// part), so each panel's fieldConfig is decoded strictly on its own too.
// __inputs and __requires belong to the export format, not the schema;
// TestDashboardsImportable checks them.
func decodeDashboardStrict(raw []byte) error {
	registerVariants()
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		return err
	}
	delete(fields, "__inputs")
	delete(fields, "__requires")
	b, err := json.Marshal(fields)
	if err != nil {
		return err
	}
	var d dashboard.Dashboard
	if err := buildErr(d.UnmarshalJSONStrict(b)); err != nil {
		return err
	}
	var panels []struct {
		Type        string          `json:"type"`
		FieldConfig json.RawMessage `json:"fieldConfig"`
	}
	if err := json.Unmarshal(fields["panels"], &panels); err != nil {
		return err
	}
	for i, p := range panels {
		if p.FieldConfig == nil {
			continue
		}
		var fc dashboard.FieldConfigSource
		if err := buildErr(fc.UnmarshalJSONStrict(p.FieldConfig)); err != nil {
			return fmt.Errorf("panels[%d].fieldConfig: %w", i, err)
		}
	}
	return nil
}

// buildErr turns the generated decoders' empty cog.BuildErrors, which
// they return instead of nil when everything decoded, into nil.
func buildErr(err error) error {
	var be cog.BuildErrors
	if err == nil || errors.As(err, &be) && len(be) == 0 {
		return nil
	}
	return err
}

func TestDashboardsDecodeStrictly(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join(repoRoot, "deploy/grafana/dashboards/*.json"))
	if len(files) == 0 {
		t.Fatal("no dashboards")
	}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := decodeDashboardStrict(raw); err != nil {
			t.Errorf("%s does not decode strictly against Grafana's dashboard schema:\n%v", filepath.Base(f), err)
			continue
		}
		// Options and queries decode strictly only for registered plugins.
		d, err := LoadDashboard(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range d.AllPanels() {
			if !slices.Contains(strictPanelTypes, p.Type) {
				t.Errorf("%s: panel type %q is not decoded strictly (register its variant)", filepath.Base(f), p.Type)
			}
			if p.Type != "row" && (p.Datasource == nil || p.Datasource.Type != "prometheus") {
				t.Errorf("%s: panel %q has no prometheus datasource type: its queries would decode loosely", filepath.Base(f), p.Title)
			}
		}
	}
}

// The strict decoder must reject what Grafana's schema does not allow, at
// every level the dashboards use.
func TestDashboardStrictDecoderRejects(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(repoRoot, "deploy/grafana/dashboards/projection.json"))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name  string
		edit  func(d map[string]any)
		wants string
	}{
		{"unknown top-level field", func(d map[string]any) { d["refreshInterval"] = "10s" }, "refreshInterval"},
		{"wrong type", func(d map[string]any) { d["schemaVersion"] = "39" }, "schemaVersion"},
		{"unknown panel field", func(d map[string]any) { panel(d, 1)["datasourceUid"] = "x" }, "datasourceUid"},
		{"unknown panel option", func(d map[string]any) { panel(d, 1)["options"].(map[string]any)["colourMode"] = "value" }, "colourMode"},
		{"unknown query field", func(d map[string]any) {
			panel(d, 1)["targets"].([]any)[0].(map[string]any)["expression"] = "up"
		}, "expression"},
		{"unknown threshold field", func(d map[string]any) {
			panel(d, 1)["fieldConfig"].(map[string]any)["defaults"].(map[string]any)["thresholds"].(map[string]any)["colour"] = "red"
		}, "colour"},
		{"missing panel type", func(d map[string]any) { delete(panel(d, 1), "type") }, "type"},
		{"unknown variable field", func(d map[string]any) {
			d["templating"].(map[string]any)["list"].([]any)[0].(map[string]any)["multiValue"] = true
		}, "multiValue"},
		{"not JSON", nil, "invalid character"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := []byte("{not json")
			if tc.edit != nil {
				var d map[string]any
				if err := json.Unmarshal(raw, &d); err != nil {
					t.Fatal(err)
				}
				tc.edit(d)
				if b, err = json.Marshal(d); err != nil {
					t.Fatal(err)
				}
			}
			err := decodeDashboardStrict(b)
			if err == nil || !strings.Contains(err.Error(), tc.wants) {
				t.Fatalf("want an error naming %q, got %v", tc.wants, err)
			}
		})
	}
}

func panel(d map[string]any, i int) map[string]any {
	return d["panels"].([]any)[i].(map[string]any)
}
