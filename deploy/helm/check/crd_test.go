package check

import (
	"strings"
	"testing"
)

const goodScaledObject = `apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata:
  name: p
  labels: {a: b}
spec:
  scaleTargetRef: {name: p}
  minReplicaCount: 1
  maxReplicaCount: 4
  advanced:
    horizontalPodAutoscalerConfig:
      behavior:
        scaleDown:
          tolerance: "0.05"
  triggers:
    - type: prometheus
      metricType: AverageValue
      metadata: {query: "sum(x)", threshold: "1000"}
      authenticationRef: {name: a, kind: TriggerAuthentication}
`

// TestScaledObjectSchemaRejects: each edit of a valid ScaledObject is one
// an API server with strict field validation refuses.
func TestScaledObjectSchemaRejects(t *testing.T) {
	if _, err := decodeScaledObject([]byte(goodScaledObject)); err != nil {
		t.Fatalf("valid ScaledObject: %v", err)
	}
	cases := []struct{ name, from, to, wants string }{
		{"unknown spec field", "minReplicaCount: 1", "minReplicas: 1", ".spec.minReplicas: unknown field"},
		{"unknown nested field", "scaleTargetRef: {name: p}", "scaleTargetRef: {name: p, kind2: x}", ".spec.scaleTargetRef.kind2: unknown field"},
		{"wrong type", "maxReplicaCount: 4", "maxReplicaCount: four", ".spec.maxReplicaCount: string, want a integer"},
		{"not an integer", "maxReplicaCount: 4", "maxReplicaCount: 4.5", "not an integer"},
		{"map value not a string", `threshold: "1000"`, "threshold: 1000", ".spec.triggers[0].metadata.threshold: float64, want a string"},
		{"missing required", "  - type: prometheus\n      metricType", "  - metricType", ".spec.triggers[0].type: required"},
		{"enum", "kind: TriggerAuthentication", "kind: Secret", "is not one of"},
		{"int-or-string pattern", `tolerance: "0.05"`, `tolerance: "five"`, "does not match"},
		{"no triggers", "  triggers:\n", "  triggerz:\n", ".spec.triggers: required"},
		{"metadata", "labels: {a: b}", "labelz: {a: b}", "metadata: "},
		{"duplicate key", "minReplicaCount: 1", "minReplicaCount: 1\n  minReplicaCount: 2", "already set"},
		{"minimum", "minReplicaCount: 1", "minReplicaCount: -1", "below the minimum"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			doc := strings.Replace(goodScaledObject, tc.from, tc.to, 1)
			if doc == goodScaledObject {
				t.Fatalf("edit %q did not apply", tc.from)
			}
			_, err := decodeScaledObject([]byte(doc))
			if err == nil || !strings.Contains(err.Error(), tc.wants) {
				t.Fatalf("want an error containing %q, got %v", tc.wants, err)
			}
		})
	}
}
