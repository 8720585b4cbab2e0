// Package check renders the cqrsflow Helm chart offline (Helm's Go
// library: no helm binary, no cluster) and decodes every rendered object
// strictly into its Kubernetes or Prometheus Operator Go type (KEDA's
// ScaledObject: validated against KEDA's CRD schema), so a misspelt or
// misplaced field fails the test instead of being dropped by the API
// server. It is its own Go module so that Helm and the Kubernetes types
// stay out of the cqrsflow module (`make test-helm`).
package check

import (
	"bytes"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// kinds maps apiVersion/kind to the strict decoder of its Go type. A
// rendered object of any other kind is an error: the chart must not emit
// objects nobody checks.
var kinds = map[string]func([]byte) (any, error){
	"v1/ServiceAccount":                       strictly[corev1.ServiceAccount],
	"v1/Service":                              strictly[corev1.Service],
	"v1/ConfigMap":                            strictly[corev1.ConfigMap],
	"apps/v1/Deployment":                      strictly[appsv1.Deployment],
	"batch/v1/Job":                            strictly[batchv1.Job],
	"autoscaling/v2/HorizontalPodAutoscaler":  strictly[autoscalingv2.HorizontalPodAutoscaler],
	"policy/v1/PodDisruptionBudget":           strictly[policyv1.PodDisruptionBudget],
	"networking.k8s.io/v1/NetworkPolicy":      strictly[networkingv1.NetworkPolicy],
	"keda.sh/v1alpha1/ScaledObject":           decodeScaledObject,
	"monitoring.coreos.com/v1/ServiceMonitor": strictly[monitoringv1.ServiceMonitor],
	"monitoring.coreos.com/v1/PrometheusRule": strictly[monitoringv1.PrometheusRule],
}

// strictly decodes doc into a T: sigs.k8s.io/yaml's strict mode rejects
// duplicate keys and fields the type does not have; a wrong type fails
// the JSON decoding.
func strictly[T any](doc []byte) (any, error) {
	v := new(T)
	if err := yaml.UnmarshalStrict(doc, v); err != nil {
		return nil, err
	}
	return v, nil
}

// scaledObjectCRD is KEDA's CRD, validated against instead of decoding
// into KEDA's Go types (see the file's header).
const scaledObjectCRD = "testdata/crds/keda.sh_scaledobjects.yaml"

var scaledObjectSchema = sync.OnceValues(func() (*Schema, error) {
	return LoadCRDSchema(scaledObjectCRD, "v1alpha1")
})

// ScaledObject is what the tests read of a KEDA ScaledObject, decoded
// after the whole object passed KEDA's CRD schema.
type ScaledObject struct {
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		ScaleTargetRef struct {
			Name string `json:"name"`
		} `json:"scaleTargetRef"`
		MinReplicaCount *int32 `json:"minReplicaCount"`
		MaxReplicaCount *int32 `json:"maxReplicaCount"`
		Triggers        []struct {
			Type     string            `json:"type"`
			Metadata map[string]string `json:"metadata"`
		} `json:"triggers"`
	} `json:"spec"`
}

func decodeScaledObject(doc []byte) (any, error) {
	s, err := scaledObjectSchema()
	if err != nil {
		return nil, err
	}
	if err := ValidateCustomResource(doc, s); err != nil {
		return nil, err
	}
	var so ScaledObject
	if err := yaml.Unmarshal(doc, &so); err != nil {
		return nil, err
	}
	return &so, nil
}

// Object is one rendered manifest decoded into its Go type.
type Object struct {
	Source string // template file
	Kind   string // apiVersion/kind
	Name   string
	Value  any // *appsv1.Deployment, *ScaledObject, …
}

func (o Object) String() string { return fmt.Sprintf("%s %s (%s)", o.Kind, o.Name, o.Source) }

// DecodeStrict decodes one YAML manifest into the Go type of its kind.
func DecodeStrict(source string, doc []byte) (Object, error) {
	var head struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Metadata   struct {
			Name string `json:"name"`
		} `json:"metadata"`
	}
	if err := yaml.Unmarshal(doc, &head); err != nil {
		return Object{}, fmt.Errorf("%s: not a YAML object: %w", source, err)
	}
	key := head.APIVersion + "/" + head.Kind
	mk, ok := kinds[key]
	if !ok {
		return Object{}, fmt.Errorf("%s: %q (%s) is a kind the check does not know", source, head.Metadata.Name, key)
	}
	if head.Metadata.Name == "" {
		return Object{}, fmt.Errorf("%s: %s without metadata.name", source, key)
	}
	v, err := mk(doc)
	if err != nil {
		return Object{}, fmt.Errorf("%s: %s %s: %w", source, key, head.Metadata.Name, err)
	}
	return Object{Source: source, Kind: key, Name: head.Metadata.Name, Value: v}, nil
}

// SplitManifests splits a rendered template into its YAML documents,
// dropping empty ones and comment-only ones.
func SplitManifests(rendered string) [][]byte {
	var out [][]byte
	for _, part := range strings.Split("\n"+rendered, "\n---") {
		b := bytes.TrimSpace([]byte(part))
		empty := true
		for _, line := range bytes.Split(b, []byte("\n")) {
			l := bytes.TrimSpace(line)
			if len(l) > 0 && l[0] != '#' {
				empty = false
				break
			}
		}
		if !empty {
			out = append(out, b)
		}
	}
	return out
}

// Release is the release the checks render: a fixed name and namespace.
var Release = chartutil.ReleaseOptions{Name: "cqrsflow", Namespace: "shop", Revision: 1, IsInstall: true}

// Render renders ch with the user values vals (as from a values file) the
// way `helm template` does, and decodes every object strictly.
func Render(ch *chart.Chart, vals map[string]any) ([]Object, error) {
	caps := chartutil.DefaultCapabilities.Copy()
	rv, err := chartutil.ToRenderValues(ch, vals, Release, caps)
	if err != nil {
		return nil, fmt.Errorf("values: %w", err)
	}
	files, err := engine.Render(ch, rv)
	if err != nil {
		return nil, fmt.Errorf("rendering: %w", err)
	}
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names)
	var objs []Object
	var errs []string
	for _, name := range names {
		if filepath.Ext(name) != ".yaml" {
			continue // NOTES.txt, _helpers.tpl
		}
		for _, doc := range SplitManifests(files[name]) {
			o, err := DecodeStrict(name, doc)
			if err != nil {
				errs = append(errs, err.Error())
				continue
			}
			objs = append(objs, o)
		}
	}
	if len(errs) > 0 {
		return objs, fmt.Errorf("%d objects do not decode strictly:\n%s", len(errs), strings.Join(errs, "\n"))
	}
	return objs, nil
}
