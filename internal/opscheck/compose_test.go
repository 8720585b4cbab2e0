package opscheck

import (
	"context"
	"go/parser"
	"go/token"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"

	"cqrsflow/internal/config"
)

// binaries of the cqrsflow image and the env var that holds each one's
// listen address.
var listenEnv = map[string]string{"api": "HTTP_ADDR", "outbox-relay": "METRICS_ADDR", "projector": "METRICS_ADDR"}

// requiredEnv must be set explicitly in compose (the binaries' defaults
// point at 127.0.0.1, which is the container itself).
var requiredEnv = map[string][]string{
	"api":          {"POSTGRES_URL", "ELASTICSEARCH_URL", "HTTP_ADDR"},
	"outbox-relay": {"POSTGRES_URL", "KAFKA_BROKERS", "METRICS_ADDR"},
	"projector":    {"POSTGRES_URL", "KAFKA_BROKERS", "ELASTICSEARCH_URL", "METRICS_ADDR"}, // POSTGRES_URL: continuous verification
}

var (
	registration = regexp.MustCompile(`\bs\.(String|URL|Secret|List|Int|Duration|Bool)\(\s*&[^,]+,\s*"([A-Z][A-Z0-9_]*)"\s*,\s*("[^"]*"|[^,]+)`)
	osEnv        = regexp.MustCompile(`os\.(?:Getenv|LookupEnv)\("([A-Z][A-Z0-9_]*)"\)`)
)

// binaryEnv returns the env vars a binary reads (from its package's
// non-test Go sources, the shared skeleton's, internal/cli, and those of
// the internal packages it imports, which register shared settings such
// as kafka.Settings: the config.Set registrations and
// os.Getenv/LookupEnv) with their literal defaults ("" when computed or
// secret).
func binaryEnv(t *testing.T, binary string) map[string]string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(repoRoot, binary, "*.go"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no Go sources for binary %s: %v", binary, err)
	}
	dirs := map[string]bool{filepath.Join(repoRoot, "internal", "cli"): true}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		parsed, err := parser.ParseFile(token.NewFileSet(), f, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range parsed.Imports {
			if p, _ := strconv.Unquote(imp.Path.Value); strings.HasPrefix(p, "cqrsflow/internal/") {
				dirs[filepath.Join(repoRoot, strings.TrimPrefix(p, "cqrsflow/"))] = true
			}
		}
	}
	for dir := range dirs {
		shared, err := filepath.Glob(filepath.Join(dir, "*.go"))
		if err != nil || len(shared) == 0 {
			t.Fatalf("no Go sources in %s: %v", dir, err)
		}
		files = append(files, shared...)
	}
	env := map[string]string{}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range registration.FindAllStringSubmatch(string(b), -1) {
			env[m[2]], _ = strconv.Unquote(m[3])
			if m[1] == "Secret" {
				env[m[2]] = "" // its third argument is the usage
			}
		}
		for _, m := range osEnv.FindAllStringSubmatch(string(b), -1) {
			if _, ok := env[m[1]]; !ok {
				env[m[1]] = ""
			}
		}
	}
	if len(env) == 0 {
		t.Fatalf("found no env registration in %s/*.go", binary)
	}
	return env
}

func loadCompose(t *testing.T, env ...string) (*types.Project, error) {
	t.Helper()
	root, err := filepath.Abs(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	opts, err := cli.NewProjectOptions([]string{filepath.Join(root, "docker-compose.yml")},
		cli.WithWorkingDirectory(root), cli.WithEnv(env), cli.WithName("cqrsflow"))
	if err != nil {
		t.Fatal(err)
	}
	return opts.LoadProject(context.Background())
}

func composeProject(t *testing.T) *types.Project {
	t.Helper()
	p, err := loadCompose(t, "CQRSFLOW_API_KEYS=compose-test-key-0123456789", "GRAFANA_ADMIN_PASSWORD=compose-test-grafana")
	if err != nil {
		t.Fatalf("docker-compose.yml does not load (compose-spec validation): %v", err)
	}
	return p
}

func TestComposeNeedsAPIKeys(t *testing.T) {
	_, err := loadCompose(t, "GRAFANA_ADMIN_PASSWORD=compose-test-grafana")
	if err == nil || !strings.Contains(err.Error(), "CQRSFLOW_API_KEYS") {
		t.Fatalf("loading without CQRSFLOW_API_KEYS: want an error naming it, got %v", err)
	}
}

// TestComposeSecurity: no default admin password, no unauthenticated
// lifecycle API, no trust authentication.
func TestComposeSecurity(t *testing.T) {
	_, err := loadCompose(t, "CQRSFLOW_API_KEYS=compose-test-key-0123456789")
	if err == nil || !strings.Contains(err.Error(), "GRAFANA_ADMIN_PASSWORD") {
		t.Errorf("loading without GRAFANA_ADMIN_PASSWORD: want an error naming it, got %v", err)
	}
	p := composeProject(t)
	if v, _ := envValue(p.Services["grafana"], "GF_SECURITY_ADMIN_PASSWORD"); v != "compose-test-grafana" {
		t.Errorf("grafana: admin password %q, want the one from GRAFANA_ADMIN_PASSWORD", v)
	}
	for _, arg := range p.Services["prometheus"].Command {
		if strings.Contains(arg, "web.enable-lifecycle") || strings.Contains(arg, "web.enable-admin-api") {
			t.Errorf("prometheus: %s lets anyone who reaches the port stop or reconfigure it", arg)
		}
	}
	pg := p.Services["postgres"]
	if v, _ := envValue(pg, "POSTGRES_HOST_AUTH_METHOD"); v != "scram-sha-256" {
		t.Errorf("postgres: POSTGRES_HOST_AUTH_METHOD %q, want scram-sha-256", v)
	}
	if v, _ := envValue(pg, "POSTGRES_INITDB_ARGS"); !strings.Contains(v, "--auth-host=scram-sha-256") || strings.Contains(v, "trust") {
		t.Errorf("postgres: POSTGRES_INITDB_ARGS %q, want scram-sha-256 for host logins", v)
	}
	custom, err := loadCompose(t, "CQRSFLOW_API_KEYS=compose-test-key-0123456789", "GRAFANA_ADMIN_PASSWORD=g", "CQRSFLOW_POSTGRES_PASSWORD=pgS3cret")
	if err != nil {
		t.Fatal(err)
	}
	want, _ := envValue(custom.Services["postgres"], "POSTGRES_PASSWORD")
	for _, name := range []string{"migrate", "api", "outbox-relay"} {
		if u, _ := envValue(custom.Services[name], "POSTGRES_URL"); want != "pgS3cret" || !strings.Contains(u, ":pgS3cret@") {
			t.Errorf("%s: POSTGRES_URL %q does not use CQRSFLOW_POSTGRES_PASSWORD (postgres has %q)", name, config.MaskURL(u), want)
		}
	}
}

// binaryOf returns which cqrsflow binary a service of our image runs.
func binaryOf(s types.ServiceConfig) (string, bool) {
	if s.Build == nil && !strings.HasPrefix(s.Image, "cqrsflow") {
		return "", false
	}
	if len(s.Entrypoint) == 0 {
		return "api", true // the image's ENTRYPOINT
	}
	return strings.TrimPrefix(s.Entrypoint[0], "/usr/local/bin/"), true
}

func portOf(t *testing.T, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("address %q: %v", addr, err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatalf("address %q: %v", addr, err)
	}
	return n
}

func envValue(s types.ServiceConfig, name string) (string, bool) {
	v, ok := s.Environment[name]
	if !ok || v == nil {
		return "", false
	}
	return *v, true
}

func TestComposeServices(t *testing.T) {
	p := composeProject(t)
	for _, name := range []string{"postgres", "kafka", "elasticsearch", "migrate", "api", "outbox-relay", "projector", "prometheus", "grafana"} {
		if _, ok := p.Services[name]; !ok {
			t.Errorf("service %s missing", name)
		}
	}
	if s, ok := p.Services["projector"]; ok && (s.Deploy == nil || s.Deploy.Replicas == nil || *s.Deploy.Replicas != 2) {
		t.Errorf("projector: want deploy.replicas 2")
	}
	if s := p.Services["elasticsearch"]; !strings.HasPrefix(s.Image, "docker.elastic.co/elasticsearch/elasticsearch:8.") {
		t.Errorf("elasticsearch: image %q is not Elasticsearch 8", s.Image)
	} else if v, _ := envValue(s, "xpack.security.enabled"); v != "false" {
		t.Errorf("elasticsearch: xpack.security.enabled = %q, want false (the binaries speak plain http)", v)
	}
	if s := p.Services["kafka"]; !strings.HasPrefix(s.Image, "apache/kafka:4.") {
		t.Errorf("kafka: image %q is not apache/kafka:4.x", s.Image)
	} else if v, _ := envValue(s, "KAFKA_PROCESS_ROLES"); v != "broker,controller" {
		t.Errorf("kafka: KAFKA_PROCESS_ROLES %q, want KRaft combined mode", v)
	}
	if s := p.Services["postgres"]; s.Image != "postgres:15" {
		t.Errorf("postgres: image %q, want postgres:15", s.Image)
	}
}

func TestComposeEnvAndPortsMatchBinaries(t *testing.T) {
	p := composeProject(t)
	scrape := composeScrapePorts(t)
	seen := map[string]bool{}
	for name, s := range p.Services {
		bin, ours := binaryOf(s)
		if !ours {
			continue
		}
		if _, known := listenEnv[bin]; !known {
			t.Errorf("%s: entrypoint %v is not one of the cqrsflow binaries", name, s.Entrypoint)
			continue
		}
		seen[bin] = true
		reads := binaryEnv(t, bin)
		for env := range s.Environment {
			if _, ok := reads[env]; !ok {
				t.Errorf("%s: sets %s, which %s does not read (it reads %v)", name, env, bin, keys(reads))
			}
		}
		if name == "migrate" {
			if !slices.Equal(s.Entrypoint, []string{"/usr/local/bin/api", "migrate"}) {
				t.Errorf("migrate: entrypoint %v, want [/usr/local/bin/api migrate]", s.Entrypoint)
			}
			if _, ok := envValue(s, "POSTGRES_URL"); !ok {
				t.Errorf("migrate: POSTGRES_URL not set")
			}
			continue
		}
		for _, env := range requiredEnv[bin] {
			if _, ok := envValue(s, env); !ok {
				t.Errorf("%s: %s must be set (the default points at 127.0.0.1)", name, env)
			}
		}
		if bin == "api" {
			_, k := envValue(s, "API_KEYS")
			_, f := envValue(s, "API_KEYS_FILE")
			if !k && !f {
				t.Errorf("api: neither API_KEYS nor API_KEYS_FILE set")
			}
		}

		// The listen port is the binary's default port, on all interfaces.
		addr, _ := envValue(s, listenEnv[bin])
		def := reads[listenEnv[bin]]
		if def == "" {
			t.Fatalf("%s: no literal default for %s in %s/*.go", bin, listenEnv[bin], bin)
		}
		port := portOf(t, addr)
		if port != portOf(t, def) {
			t.Errorf("%s: %s=%s, but %s's default port is %d", name, listenEnv[bin], addr, bin, portOf(t, def))
		}
		if h, _, _ := net.SplitHostPort(addr); h != "0.0.0.0" && h != "" {
			t.Errorf("%s: %s=%s listens only inside the container; use 0.0.0.0", name, listenEnv[bin], addr)
		}
		for _, pp := range s.Ports {
			if int(pp.Target) != port {
				t.Errorf("%s: publishes container port %d, but listens on %d", name, pp.Target, port)
			}
		}
		if s.HealthCheck == nil || !slices.ContainsFunc(s.HealthCheck.Test, func(a string) bool {
			return strings.Contains(a, ":"+strconv.Itoa(port)+"/readyz")
		}) {
			t.Errorf("%s: healthcheck must probe /readyz on port %d, got %v", name, port, s.HealthCheck)
		}
		if got, ok := scrape[name]; !ok || got != port {
			t.Errorf("%s: prometheus.compose.yml scrapes port %d (found %v), binary listens on %d", name, got, ok, port)
		}

		// Dependencies named in URLs are services of this file.
		for _, env := range []string{"POSTGRES_URL", "ELASTICSEARCH_URL", "KAFKA_BROKERS"} {
			v, ok := envValue(s, env)
			if !ok {
				continue
			}
			for _, hostport := range hostPorts(t, env, v) {
				h, _, err := net.SplitHostPort(hostport)
				if err != nil {
					t.Errorf("%s: %s=%q: %v", name, env, v, err)
					continue
				}
				if _, ok := p.Services[h]; !ok {
					t.Errorf("%s: %s points at %q, which is not a service", name, env, h)
				}
				if _, ok := s.DependsOn[h]; !ok {
					t.Errorf("%s: uses %s but does not depend on it", name, h)
				}
			}
		}
	}
	for bin := range listenEnv {
		if !seen[bin] {
			t.Errorf("no compose service runs %s", bin)
		}
	}
	// The address the relay and projectors use is one Kafka advertises.
	adv, _ := envValue(p.Services["kafka"], "KAFKA_ADVERTISED_LISTENERS")
	for _, name := range []string{"outbox-relay", "projector"} {
		b, _ := envValue(p.Services[name], "KAFKA_BROKERS")
		if !strings.Contains(adv, "://"+b) {
			t.Errorf("%s: KAFKA_BROKERS=%s is not among kafka's advertised listeners %s", name, b, adv)
		}
	}
}

func hostPorts(t *testing.T, env, v string) []string {
	t.Helper()
	if env == "KAFKA_BROKERS" {
		return strings.Split(v, ",")
	}
	u, err := url.Parse(v)
	if err != nil {
		t.Errorf("%s=%q: %v", env, v, err)
		return nil
	}
	return []string{u.Host}
}

func keys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// composeScrapePorts maps the compose Prometheus config's jobs to the port
// they scrape.
func composeScrapePorts(t *testing.T) map[string]int {
	t.Helper()
	var cfg struct {
		RuleFiles     []string `yaml:"rule_files"`
		ScrapeConfigs []struct {
			JobName       string `yaml:"job_name"`
			StaticConfigs []struct {
				Targets []string `yaml:"targets"`
			} `yaml:"static_configs"`
			DNSSDConfigs []struct {
				Names []string `yaml:"names"`
				Port  int      `yaml:"port"`
			} `yaml:"dns_sd_configs"`
		} `yaml:"scrape_configs"`
	}
	readYAML(t, filepath.Join(repoRoot, "deploy/prometheus/prometheus.compose.yml"), &cfg)
	out := map[string]int{}
	for _, sc := range cfg.ScrapeConfigs {
		for _, st := range sc.StaticConfigs {
			for _, tg := range st.Targets {
				h, _, _ := net.SplitHostPort(tg)
				if h != sc.JobName && h != "localhost" {
					t.Errorf("prometheus.compose.yml job %s scrapes %s: the host should be the service of the same name", sc.JobName, tg)
				}
				out[sc.JobName] = portOf(t, tg)
			}
		}
		for _, d := range sc.DNSSDConfigs {
			if !slices.Contains(d.Names, sc.JobName) {
				t.Errorf("prometheus.compose.yml job %s resolves %v: want the service name", sc.JobName, d.Names)
			}
			out[sc.JobName] = d.Port
		}
	}
	return out
}

func TestComposeDependsOnAndHealthchecks(t *testing.T) {
	p := composeProject(t)
	for name, s := range p.Services {
		if name != "migrate" && (s.HealthCheck == nil || len(s.HealthCheck.Test) == 0 || s.HealthCheck.Disable) {
			t.Errorf("%s: no healthcheck", name)
		}
		for dep, d := range s.DependsOn {
			dc, ok := p.Services[dep]
			if !ok {
				t.Errorf("%s depends on unknown service %s", name, dep)
				continue
			}
			switch d.Condition {
			case types.ServiceConditionHealthy:
				if dc.HealthCheck == nil {
					t.Errorf("%s waits for %s to be healthy, but %s has no healthcheck", name, dep, dep)
				}
			case types.ServiceConditionCompletedSuccessfully:
				if dep != "migrate" {
					t.Errorf("%s waits for %s to complete: only the one-shot migrate does", name, dep)
				}
			default:
				t.Errorf("%s depends on %s with condition %q: want service_healthy or service_completed_successfully", name, dep, d.Condition)
			}
		}
	}
	for _, name := range []string{"api", "outbox-relay"} {
		if d, ok := p.Services[name].DependsOn["migrate"]; !ok || d.Condition != types.ServiceConditionCompletedSuccessfully {
			t.Errorf("%s must start after migrate completed", name)
		}
	}
}

func TestComposeMountsExist(t *testing.T) {
	p := composeProject(t)
	root, _ := filepath.Abs(repoRoot)
	deploy := filepath.Join(root, "deploy") + string(filepath.Separator)
	mounts := map[string]map[string]string{} // service → target → source
	for name, s := range p.Services {
		for _, v := range s.Volumes {
			if v.Type != types.VolumeTypeBind {
				continue
			}
			if !strings.HasPrefix(v.Source, deploy) {
				t.Errorf("%s: bind mount %s is not under deploy/", name, v.Source)
			}
			if _, err := os.Stat(v.Source); err != nil {
				t.Errorf("%s: mounted file missing: %v", name, err)
			}
			if !v.ReadOnly {
				t.Errorf("%s: config mount %s should be read-only", name, v.Target)
			}
			if mounts[name] == nil {
				mounts[name] = map[string]string{}
			}
			mounts[name][v.Target] = v.Source
		}
	}

	// Prometheus: its config, and the rule files that config names.
	prom := mounts["prometheus"]
	if got := prom["/etc/prometheus/prometheus.yml"]; got != filepath.Join(root, "deploy/prometheus/prometheus.compose.yml") {
		t.Errorf("prometheus: /etc/prometheus/prometheus.yml is %q, want deploy/prometheus/prometheus.compose.yml", got)
	}
	var promCfg struct {
		RuleFiles []string `yaml:"rule_files"`
	}
	readYAML(t, filepath.Join(root, "deploy/prometheus/prometheus.compose.yml"), &promCfg)
	if len(promCfg.RuleFiles) == 0 {
		t.Error("prometheus.compose.yml loads no rule files")
	}
	for _, rf := range promCfg.RuleFiles {
		target := filepath.Join("/etc/prometheus", filepath.Dir(rf))
		src, ok := prom[target]
		if !ok {
			t.Errorf("prometheus: rule_files %q needs a mount at %s", rf, target)
			continue
		}
		if m, _ := filepath.Glob(filepath.Join(src, filepath.Base(rf))); len(m) == 0 {
			t.Errorf("prometheus: %s matches no file in %s", rf, src)
		}
	}

	// Grafana: provisioning, and dashboards where the provider looks.
	gr := mounts["grafana"]
	for target, src := range map[string]string{
		"/etc/grafana/provisioning/datasources": "deploy/grafana/provisioning/datasources",
		"/etc/grafana/provisioning/dashboards":  "deploy/grafana/provisioning/dashboards",
	} {
		if gr[target] != filepath.Join(root, src) {
			t.Errorf("grafana: %s is %q, want %s", target, gr[target], src)
		}
	}
	var prov struct {
		Providers []struct {
			Options struct {
				Path string `yaml:"path"`
			} `yaml:"options"`
		} `yaml:"providers"`
	}
	readYAML(t, filepath.Join(root, "deploy/grafana/provisioning/dashboards/cqrsflow.yml"), &prov)
	for _, pr := range prov.Providers {
		if gr[pr.Options.Path] != filepath.Join(root, "deploy/grafana/dashboards") {
			t.Errorf("grafana: the dashboard provider reads %s, but deploy/grafana/dashboards is mounted at %v", pr.Options.Path, gr)
		}
	}
	if home, ok := envValue(p.Services["grafana"], "GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"); ok {
		rel, err := filepath.Rel("/var/lib/grafana/dashboards/cqrsflow", home)
		if _, serr := os.Stat(filepath.Join(root, "deploy/grafana/dashboards", rel)); err != nil || serr != nil {
			t.Errorf("grafana: home dashboard %s is not a provisioned file", home)
		}
	}
}

func TestDockerfile(t *testing.T) {
	p := composeProject(t)
	s := p.Services["api"]
	if s.Build == nil {
		t.Fatal("api: no build section")
	}
	df := s.Build.Dockerfile
	if !filepath.IsAbs(df) {
		df = filepath.Join(s.Build.Context, df)
	}
	b, err := os.ReadFile(df)
	if err != nil {
		t.Fatalf("the compose build's Dockerfile: %v", err)
	}
	text := string(b)
	var froms []string
	var user string
	for _, line := range strings.Split(text, "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && strings.EqualFold(f[0], "FROM") {
			froms = append(froms, f[1])
		}
		if len(f) >= 2 && strings.EqualFold(f[0], "USER") {
			user = f[1]
		}
	}
	if len(froms) < 2 || !strings.HasPrefix(froms[0], "golang:") {
		t.Errorf("want a multi-stage build starting from golang:, got FROM %v", froms)
	}
	final := froms[len(froms)-1]
	if !strings.HasPrefix(final, "gcr.io/distroless/static") && final != "scratch" {
		t.Errorf("final stage %s: want distroless/static or scratch", final)
	}
	if u := strings.Split(user, ":")[0]; u == "" || u == "0" || u == "root" {
		t.Errorf("final stage runs as %q: want a non-root USER", user)
	}
	for _, want := range []string{"CGO_ENABLED=0", "./api", "./outbox-relay", "./projector", "./deploy/docker/healthcheck"} {
		if !strings.Contains(text, want) {
			t.Errorf("Dockerfile does not contain %q", want)
		}
	}
	if _, err := os.Stat(df + ".dockerignore"); err != nil {
		t.Errorf("no %s.dockerignore: %v", filepath.Base(df), err)
	}
}
