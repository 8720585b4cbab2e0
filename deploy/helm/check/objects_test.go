package check

import (
	"encoding/json"
	"fmt"
	"os"
	"path"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// secretEnv are the settings that hold secrets: never a literal value.
var secretEnv = []string{"POSTGRES_URL", "API_KEYS", "KAFKA_SASL_PASSWORD", "ELASTICSEARCH_PASSWORD", "ELASTICSEARCH_API_KEY"}

// binaryEnv reads testdata/binary-env.json: the env vars each binary
// reads, generated from the binaries' config registrations by
// internal/opscheck (TestHelmCheckBinaryEnvUpToDate keeps it current).
func binaryEnv(t *testing.T) map[string][]string {
	t.Helper()
	b, err := os.ReadFile("testdata/binary-env.json")
	if err != nil {
		t.Fatal(err)
	}
	var env map[string][]string
	if err := json.Unmarshal(b, &env); err != nil {
		t.Fatalf("testdata/binary-env.json: %v", err)
	}
	for _, bin := range []string{"api", "outbox-relay", "projector"} {
		if len(env[bin]) == 0 {
			t.Fatalf("testdata/binary-env.json has no env vars for %s", bin)
		}
	}
	return env
}

// podTemplates returns every pod template of the render with its owner.
func podTemplates(objs []Object) map[string]corev1.PodTemplateSpec {
	out := map[string]corev1.PodTemplateSpec{}
	for _, o := range objs {
		switch v := o.Value.(type) {
		case *appsv1.Deployment:
			out[o.String()] = v.Spec.Template
		case *batchv1.Job:
			out[o.String()] = v.Spec.Template
		}
	}
	return out
}

// checkContainerSecurity: non-root, read-only root filesystem, no
// capabilities, no privilege escalation, RuntimeDefault seccomp.
func checkContainerSecurity(where string, pod corev1.PodSpec) []string {
	var probs []string
	ps := pod.SecurityContext
	if ps == nil || ps.RunAsNonRoot == nil || !*ps.RunAsNonRoot {
		probs = append(probs, where+": pod securityContext.runAsNonRoot is not true")
	}
	if ps == nil || ps.SeccompProfile == nil || ps.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		probs = append(probs, where+": pod seccompProfile is not RuntimeDefault")
	}
	if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		probs = append(probs, where+": the service account token is mounted (the binaries never call the API server)")
	}
	for _, c := range append(slices.Clone(pod.InitContainers), pod.Containers...) {
		sc := c.SecurityContext
		cw := where + " container " + c.Name
		switch {
		case sc == nil:
			probs = append(probs, cw+": no securityContext")
			continue
		case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
			probs = append(probs, cw+": root filesystem not read-only")
		case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
			probs = append(probs, cw+": privilege escalation allowed")
		case sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) > 0:
			probs = append(probs, cw+": capabilities not dropped (want drop [ALL], add none)")
		}
		if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
			probs = append(probs, cw+": no cpu/memory request or memory limit")
		}
	}
	return probs
}

// checkEnv: every env var is one the container's binary reads, and the
// secret ones come from Secrets.
func checkEnv(where string, c corev1.Container, known map[string][]string) []string {
	var probs []string
	if len(c.Command) == 0 {
		return []string{where + ": no command (the image's entrypoint is the api; name the binary)"}
	}
	bin := path.Base(c.Command[0])
	reads, ok := known[bin]
	if !ok {
		return []string{fmt.Sprintf("%s: command %q is no cqrsflow binary", where, c.Command[0])}
	}
	seen := map[string]bool{}
	for _, e := range c.Env {
		if seen[e.Name] {
			probs = append(probs, fmt.Sprintf("%s: env %s set twice", where, e.Name))
		}
		seen[e.Name] = true
		if !slices.Contains(reads, e.Name) {
			probs = append(probs, fmt.Sprintf("%s: env %s is not read by %s", where, e.Name, bin))
		}
		if slices.Contains(secretEnv, e.Name) && (e.Value != "" || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil) {
			probs = append(probs, fmt.Sprintf("%s: %s must come from a Secret (valueFrom.secretKeyRef)", where, e.Name))
		}
	}
	return probs
}

// checkProbes: liveness on /healthz and readiness on /readyz, on a port
// the container declares.
func checkProbes(where string, c corev1.Container) []string {
	var probs []string
	for _, p := range []struct {
		probe *corev1.Probe
		path  string
	}{{c.LivenessProbe, "/healthz"}, {c.ReadinessProbe, "/readyz"}} {
		if p.probe == nil || p.probe.HTTPGet == nil || p.probe.HTTPGet.Path != p.path {
			probs = append(probs, fmt.Sprintf("%s: no HTTP probe on %s", where, p.path))
			continue
		}
		port := p.probe.HTTPGet.Port
		if !slices.ContainsFunc(c.Ports, func(cp corev1.ContainerPort) bool {
			return cp.Name == port.String() || cp.ContainerPort == port.IntVal
		}) {
			probs = append(probs, fmt.Sprintf("%s: probe %s on port %s, which the container does not declare", where, p.path, port.String()))
		}
	}
	return probs
}

func TestPodsAreLockedDownAndUseKnownEnv(t *testing.T) {
	known := binaryEnv(t)
	for _, r := range renderAll(t) {
		for where, tpl := range podTemplates(r.objs) {
			where = r.file + ": " + where
			for _, p := range checkContainerSecurity(where, tpl.Spec) {
				t.Error(p)
			}
			for _, c := range tpl.Spec.Containers {
				for _, p := range checkEnv(where, c, known) {
					t.Error(p)
				}
				if !strings.Contains(where, "batch/v1/Job") {
					for _, p := range checkProbes(where, c) {
						t.Error(p)
					}
				}
			}
		}
	}
}

func find[T any](objs []Object) []T {
	var out []T
	for _, o := range objs {
		if v, ok := o.Value.(T); ok {
			out = append(out, v)
		}
	}
	return out
}

func envOf(c corev1.Container, name string) (string, bool) {
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value, true
		}
	}
	return "", false
}

// deployments indexes the render's Deployments by component label
// (projectors by projection).
func deployments(objs []Object) map[string]*appsv1.Deployment {
	out := map[string]*appsv1.Deployment{}
	for _, d := range find[*appsv1.Deployment](objs) {
		l := d.Spec.Template.Labels
		key := l["app.kubernetes.io/component"]
		if p := l["cqrsflow.io/projection"]; p != "" {
			key += "/" + p
		}
		out[key] = d
	}
	return out
}

// selects reports whether a selector picks the pods of some Deployment.
func selects(objs []Object, sel map[string]string) bool {
	s := labels.SelectorFromSet(sel)
	for _, d := range find[*appsv1.Deployment](objs) {
		if s.Matches(labels.Set(d.Spec.Template.Labels)) {
			return true
		}
	}
	return false
}

func TestWorkloadsMatchTheValues(t *testing.T) {
	for _, r := range renderAll(t) {
		v := r.values
		deps := deployments(r.objs)
		projections := v["projector"].(map[string]any)["projections"].([]any)
		if len(deps) != 2+len(projections) {
			t.Errorf("%s: Deployments %v, want api, outbox-relay and %d projectors", r.file, keys(deps), len(projections))
		}
		for _, p := range projections {
			name := p.(map[string]any)["name"].(string)
			d, ok := deps["projector/"+name]
			if !ok {
				t.Errorf("%s: no projector Deployment for projection %s", r.file, name)
				continue
			}
			if got, _ := envOf(d.Spec.Template.Spec.Containers[0], "PROJECTIONS"); got != name {
				t.Errorf("%s: projector %s runs PROJECTIONS=%q", r.file, name, got)
			}
		}
		migrations := v["migrations"].(map[string]any)["enabled"].(bool)
		jobs := find[*batchv1.Job](r.objs)
		if migrations != (len(jobs) == 1) {
			t.Errorf("%s: migrations.enabled=%v but %d Jobs", r.file, migrations, len(jobs))
		}
		for _, j := range jobs {
			if j.Annotations["helm.sh/hook"] != "pre-install,pre-upgrade" || !slices.Equal(j.Spec.Template.Spec.Containers[0].Command, []string{"/usr/local/bin/api", "migrate"}) {
				t.Errorf("%s: migration Job %s: hook %q, command %v", r.file, j.Name, j.Annotations["helm.sh/hook"], j.Spec.Template.Spec.Containers[0].Command)
			}
		}
		want := fmt.Sprint(!migrations)
		if api, ok := deps["api"]; !ok {
			t.Errorf("%s: no api Deployment", r.file)
		} else if got, _ := envOf(api.Spec.Template.Spec.Containers[0], "MIGRATE_ON_START"); got != want {
			t.Errorf("%s: api MIGRATE_ON_START=%q, want %s", r.file, got, want)
		}
		if relay, ok := deps["outbox-relay"]; !ok {
			t.Errorf("%s: no outbox-relay Deployment", r.file)
		} else if got, _ := envOf(relay.Spec.Template.Spec.Containers[0], "MIGRATE"); got != want {
			t.Errorf("%s: relay MIGRATE=%q, want %s", r.file, got, want)
		}
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// TestScalingObjects: the api's HPA targets it on CPU (with a CPU request
// to measure against), every projector's ScaledObject targets its
// Deployment, which leaves replicas to KEDA, and never scales above the
// partition count; every PDB and Service selects pods.
func TestScalingObjects(t *testing.T) {
	for _, r := range renderAll(t) {
		deps := deployments(r.objs)
		for _, h := range find[*autoscalingv2.HorizontalPodAutoscaler](r.objs) {
			api := deps["api"]
			if api == nil || h.Spec.ScaleTargetRef.Name != api.Name || len(h.Spec.Metrics) != 1 || h.Spec.Metrics[0].Resource == nil || h.Spec.Metrics[0].Resource.Name != corev1.ResourceCPU {
				t.Errorf("%s: HPA %s does not scale the api Deployment on CPU", r.file, h.Name)
			}
			if api != nil && api.Spec.Replicas != nil {
				t.Errorf("%s: api Deployment sets replicas although the HPA owns them", r.file)
			}
		}
		partitions := projectorPartitions(r.values)
		for _, so := range find[*ScaledObject](r.objs) {
			checkScaledObject(t, r, so, deps, partitions)
		}
		for _, p := range find[*policyv1.PodDisruptionBudget](r.objs) {
			if p.Spec.Selector == nil || !selects(r.objs, p.Spec.Selector.MatchLabels) {
				t.Errorf("%s: PodDisruptionBudget %s selects no pods", r.file, p.Name)
			}
		}
		for _, s := range find[*corev1.Service](r.objs) {
			if !selects(r.objs, s.Spec.Selector) {
				t.Errorf("%s: Service %s selects no pods", r.file, s.Name)
			}
		}
	}
}

// projectorPartitions: each projection's partition count from the values.
func projectorPartitions(v map[string]any) map[string]int {
	def := toInt(v["kafka"].(map[string]any)["topicPartitions"])
	out := map[string]int{}
	for _, p := range v["projector"].(map[string]any)["projections"].([]any) {
		pm := p.(map[string]any)
		out[pm["name"].(string)] = def
		if n, ok := pm["partitions"]; ok {
			out[pm["name"].(string)] = toInt(n)
		}
	}
	return out
}

func toInt(v any) int {
	switch n := v.(type) {
	case int:
		return n
	case int64:
		return int(n)
	case float64:
		return int(n)
	}
	panic(fmt.Sprintf("not a number: %T %v", v, v))
}

func checkScaledObject(t *testing.T, r rendered, so *ScaledObject, deps map[string]*appsv1.Deployment, partitions map[string]int) {
	t.Helper()
	proj := so.Labels["cqrsflow.io/projection"]
	d := deps["projector/"+proj]
	if d == nil || so.Spec.ScaleTargetRef.Name != d.Name {
		t.Errorf("%s: ScaledObject %s does not target the projector Deployment of %q", r.file, so.Name, proj)
		return
	}
	if d.Spec.Replicas != nil {
		t.Errorf("%s: %s sets replicas although KEDA owns them", r.file, d.Name)
	}
	if so.Spec.MaxReplicaCount == nil || int(*so.Spec.MaxReplicaCount) > partitions[proj] || *so.Spec.MaxReplicaCount < 1 {
		t.Errorf("%s: ScaledObject %s maxReplicaCount %v, want 1..%d (the partition count)", r.file, so.Name, so.Spec.MaxReplicaCount, partitions[proj])
	}
	if len(so.Spec.Triggers) != 1 || !strings.Contains(so.Spec.Triggers[0].Metadata["query"], "cqrsflow_projector_consumer_lag_records") ||
		!strings.Contains(so.Spec.Triggers[0].Metadata["query"], `projection="`+proj+`"`) {
		t.Errorf("%s: ScaledObject %s does not scale on the consumer lag of %s: %+v", r.file, so.Name, proj, so.Spec.Triggers)
	}
}
