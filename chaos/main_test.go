package main

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
	"time"
)

func TestCommandLine(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		out  string
	}{
		{[]string{"-h"}, 0, "CHAOS_DURATION"},
		{[]string{"extra"}, 2, "unexpected arguments"},
		{[]string{"-nope"}, 2, "flag provided but not defined"},
		{[]string{"-duration", "5s"}, 2, "-duration"},
		{[]string{"-duration", "1m", "-quiet", "40s"}, 2, "-quiet"},
		{[]string{"-seed", "x1"}, 2, "not an unsigned integer"},
		{[]string{"-faults", "kill,meteor"}, 2, `unknown kind "meteor"`},
		{[]string{"-port-base", "19190"}, 2, "19200 of the shared stack"},
		{[]string{"-state-dir", "/var/tmp/cqrsflow-local"}, 2, "not a dir of its own"},
		{[]string{"-state-dir", "relative"}, 2, "must be absolute"},
		{[]string{"-clients", "0", "-rate", "-1", "-race", "maybe"}, 2, "-clients"},
	} {
		var out, errOut bytes.Buffer
		code := run(context.Background(), tc.args, &out, &errOut)
		if code != tc.code || !strings.Contains(out.String()+errOut.String(), tc.out) {
			t.Errorf("%v: exit %d, want %d with %q; got:\n%s%s", tc.args, code, tc.code, tc.out, out.String(), errOut.String())
		}
	}
}

func TestConfigDefaultsAndEnv(t *testing.T) {
	t.Setenv("CHAOS_DURATION", "2m")
	t.Setenv("CHAOS_SEED", "7,random")
	t.Setenv("CHAOS_FAULTS", "kill,cut")
	c, err := parseConfig([]string{"-clients", "3"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if c.Duration != 2*time.Minute || c.Clients != 3 || len(c.Kinds) != 2 || c.PortBase != 26400 {
		t.Fatalf("config %+v", c)
	}
	if len(c.Seeds) != 2 || c.Seeds[0] != 7 || c.SeedsRandom[0] || !c.SeedsRandom[1] {
		t.Fatalf("seeds %v random %v", c.Seeds, c.SeedsRandom)
	}
	if c.OutDir != "/var/tmp/cqrsflow-chaos/runs" {
		t.Fatalf("out dir %s", c.OutDir)
	}
}

// The scripts' environment always names the chaos stack, whatever the
// caller's environment says.
func TestStackEnvOverridesTheCaller(t *testing.T) {
	t.Setenv("CQRSFLOW_STATE_DIR", "/var/tmp/cqrsflow-local")
	t.Setenv("PG_PORT", "15432")
	t.Setenv("KAFKA_SASL_PORT", "19094")
	t.Setenv("ES_WAIT", "5")
	s := &stack{dir: "/var/tmp/cqrsflow-chaos", base: 26400, kafkaExtra: "/x"}
	got := map[string][]string{}
	for _, kv := range s.env() {
		k, v, _ := strings.Cut(kv, "=")
		got[k] = append(got[k], v)
	}
	for k, want := range map[string]string{"CQRSFLOW_STATE_DIR": "/var/tmp/cqrsflow-chaos", "PG_PORT": "26400", "KAFKA_PORT": "26401",
		"KAFKA_CONTROLLER_PORT": "26402", "KAFKA_SASL_PORT": "26405", "ES_PORT": "26403", "ES_TRANSPORT_PORT": "26404", "KAFKA_EXTRA_PROPERTIES": "/x", "ES_WAIT": "300"} {
		if len(got[k]) != 1 || got[k][0] != want {
			t.Errorf("%s = %v, want only %s", k, got[k], want)
		}
	}
}

func TestKafkaListeners(t *testing.T) {
	s := &stack{dir: t.TempDir(), base: 26400}
	if err := s.writeKafkaExtra([]string{"relay-1", "projector-2"}, func(c string) int { return map[string]int{"relay-1": 26433, "projector-2": 26436}[c] }); err != nil {
		t.Fatal(err)
	}
	b, err := readFileString(s.kafkaExtra)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"listeners=PLAINTEXT://127.0.0.1:26401,CONTROLLER://127.0.0.1:26402,RELAY1://127.0.0.1:26410,PROJECTOR2://127.0.0.1:26411\n",
		"advertised.listeners=PLAINTEXT://127.0.0.1:26401,RELAY1://127.0.0.1:26433,PROJECTOR2://127.0.0.1:26436\n",
		"listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,RELAY1:PLAINTEXT,PROJECTOR2:PLAINTEXT\n",
	} {
		if !strings.Contains(b, want) {
			t.Errorf("missing %q in:\n%s", want, b)
		}
	}
}

func TestParseMetrics(t *testing.T) {
	text := `# HELP cqrsflow_projector_consumer_lag_records lag
# TYPE cqrsflow_projector_consumer_lag_records gauge
cqrsflow_projector_consumer_lag_records{partition="0",projection="products",topic="t"} 3
cqrsflow_projector_consumer_lag_records{partition="1",projection="products",topic="t"} 0
cqrsflow_outbox_pending_events 0
go_goroutines 12
cqrsflow_relay_publish_lag_seconds_bucket{le="+Inf"} 5
`
	s, err := parseMetrics("p", strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	if len(s) != 4 {
		t.Fatalf("%d samples: %+v", len(s), s)
	}
	if s[0].Name != "cqrsflow_projector_consumer_lag_records" || s[0].Value != 3 || s[0].Labels["partition"] != "0" || s[0].Labels["topic"] != "t" {
		t.Fatalf("first sample %+v", s[0])
	}
	if s[2].Name != "cqrsflow_outbox_pending_events" || len(s[2].Labels) != 0 {
		t.Fatalf("third sample %+v", s[2])
	}
}

func TestLinksAndPorts(t *testing.T) {
	links := allLinks()
	if len(links) != 12 || offProxies+len(links) > portSpan {
		t.Fatalf("%d links do not fit the port span", len(links))
	}
	h := &harness{stk: &stack{base: 26400}}
	seen := map[int]bool{}
	for _, l := range links {
		p := h.proxyPort(l)
		if seen[p] || p < 26400+offProxies || p >= 26400+portSpan {
			t.Fatalf("link %s on port %d", l, p)
		}
		seen[p] = true
	}
	if len(kafkaComponents) > offHTTP-offListeners || len(allComponents) > offProxies-offHTTP {
		t.Fatal("port ranges overlap")
	}
}

func readFileString(path string) (string, error) {
	b, err := os.ReadFile(path)
	return string(b), err
}

// The excerpt of a hung process: its warnings before the moment and the
// project's frames of the goroutine dump the harness asked for, not the
// runtime's.
func TestProcessExcerpt(t *testing.T) {
	path := t.TempDir() + "/p.log"
	log := `=== chaos: start #1 of projector-1 at 2026-03-01T10:00:00Z
{"time":"2026-03-01T10:00:01Z","level":"INFO","msg":"starting"}
{"time":"2026-03-01T10:00:02Z","level":"ERROR","msg":"unable to request api versions"}
projector: ensuring the DLQ topic: broker closed the connection
` + dumpMarker + ` projector-1 pid 7 at 2026-03-01T10:01:32Z: hung
SIGQUIT: quit
goroutine 1 gp=0x1 m=nil [sync.WaitGroup.Wait]:
runtime.gopark(0x0)
	/usr/local/go/src/runtime/proc.go:462 +0xce
main.consume({0x1})
	/src/projector/main.go:236 +0x9e5
goroutine 9 gp=0x2 m=nil [select]:
runtime.gopark(0x0)
	/usr/local/go/src/runtime/proc.go:462 +0xce
=== chaos: start #2 of projector-1 at 2026-03-01T10:01:34Z
{"time":"2026-03-01T10:02:00Z","level":"ERROR","msg":"later"}
`
	if err := os.WriteFile(path, []byte(log), 0o644); err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 3, 1, 10, 1, 32, 0, time.UTC)
	got := strings.Join(processExcerpt(path, at, 40), "\n")
	for _, want := range []string{"unable to request api versions", "projector: ensuring the DLQ topic", "goroutine 1 gp=0x1",
		"main.consume({0x1})", "/src/projector/main.go:236"} {
		if !strings.Contains(got, want) {
			t.Errorf("excerpt lacks %q:\n%s", want, got)
		}
	}
	for _, not := range []string{"starting", "runtime.gopark", "goroutine 9", "later"} {
		if strings.Contains(got, not) {
			t.Errorf("excerpt has %q:\n%s", not, got)
		}
	}
}
