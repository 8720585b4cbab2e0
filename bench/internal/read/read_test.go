package read

import (
	"errors"
	"strings"
	"testing"
	"time"

	"cqrsflow/bench/internal/cli"
	"cqrsflow/bench/internal/result"
	"cqrsflow/bench/loadgen"
)

func TestParseSettings(t *testing.T) {
	t.Setenv(result.QuickEnv, "1")
	s, err := parseSettings(nil)
	if err != nil {
		t.Fatal(err)
	}
	if s.Duration != 6*time.Second || s.Slices != 2 || s.Clients != 32 || s.Products != 2000 || !s.Quick || len(s.Routes) != 3 {
		t.Errorf("quick settings = %+v", s)
	}
	s, err = parseSettings([]string{"-routes", "get, search,get"})
	if err != nil || len(s.Routes) != 2 || s.Routes[0] != "get" || s.Routes[1] != "search" {
		t.Errorf("-routes get,search,get = %v, %v; want [get search]", s.Routes, err)
	}
	for _, args := range [][]string{
		{"-slices", "0"}, {"-clients", "0"}, {"-duration", "0s"}, {"-products", "0"}, {"-warmup", "-1s"},
		{"-routes", ""}, {"-routes", "search,delete"}, {"-q", " "}, {"extra"},
		{"-elasticsearch-url", "https://127.0.0.1:9200"}, {"-elasticsearch-url", "http://10.0.0.1:9200"},
		{"-elasticsearch-url", "http://localhost:9200"}, {"-elasticsearch-url", "http://127.0.0.1"},
		// what the hop itself refuses is refused here, before anything starts
		{"-elasticsearch-url", "http://127.0.0.1:9200/es"}, {"-elasticsearch-url", "http://u:p@127.0.0.1:9200"},
	} {
		var ue cli.UsageError
		if _, err := parseSettings(args); !errors.As(err, &ue) {
			t.Errorf("%v: err = %v, want a usage error", args, err)
		}
	}
}

func TestHopOffAcceptsAnyElasticsearchURL(t *testing.T) {
	if _, err := parseSettings([]string{"-hop=false", "-elasticsearch-url", "https://es.example:9200"}); err != nil {
		t.Errorf("-hop=false: %v", err)
	}
	if s, err := parseSettings([]string{"-elasticsearch-url", "http://127.0.0.1:19200"}); err != nil || !s.Hop {
		t.Errorf("default: hop %v, %v", s.Hop, err)
	}
}

func TestResultTargets(t *testing.T) {
	sum := func(ops int, rate float64) loadgen.Summary {
		return loadgen.Summary{Ops: ops, Throughput: rate, Elapsed: time.Second, P99: 10 * time.Millisecond}
	}
	m := measurement{Routes: []routeMeasurement{
		{Route: route{name: "search"}, API: sum(800, 800), Direct: sum(1000, 1000), APICPU: cpu{API: 0.08, ES: 0.3}, DirectCPU: cpu{ES: 0.25}},
		{Route: route{name: "get"}, API: sum(700, 700), Direct: sum(1000, 1000)},
		{Route: route{name: "list"}, API: sum(100, 100), Direct: sum(1000, 1000)},
	}}
	res := m.result(settings{Clients: 32}, time.Now())
	if len(res.Rows) != 9 {
		t.Fatalf("%d rows, want 3 per route", len(res.Rows))
	}
	if r := res.Rows[0]; r.Ratio != 0.8 || r.Pass == nil || !*r.Pass {
		t.Errorf("search row = %+v, want ratio 0.8 passing", r)
	}
	if r := res.Rows[2]; r.Value != 100 || r.BaselineValue != 250 {
		t.Errorf("search CPU row = %+v, want 0.08 s / 800 = 100 µs against 0.25 s / 1000 = 250 µs", r)
	}
	if r := res.Rows[3]; r.Pass == nil || *r.Pass {
		t.Errorf("get row = %+v, want ratio 0.7 missing", r)
	}
	if r := res.Rows[6]; r.Pass != nil {
		t.Errorf("list row = %+v, want no target", r)
	}
	m.Routes[0].API.Errors = 1
	if r := m.result(settings{}, time.Now()).Rows[0]; *r.Pass {
		t.Error("an api error passed the target")
	}

	// With the hop measured, each route gets a floor row: the hop's rate
	// against the direct rate, with no target of its own.
	m.Routes[1].Hop = sum(500, 500)
	res = m.result(settings{}, time.Now())
	if len(res.Rows) != 10 {
		t.Fatalf("%d rows, want one more for the get's floor", len(res.Rows))
	}
	if r := res.Rows[6]; r.Ratio != 0.5 || r.Pass != nil || !strings.Contains(r.Name, "floor") {
		t.Errorf("floor row = %+v, want ratio 0.5 without a target", r)
	}
	if f := m.Routes[1].floor(); f != 0.5 {
		t.Errorf("floor = %v, want 0.5", f)
	}
	if m.Routes[0].hasHop() {
		t.Error("a route without hop runs reports a hop")
	}
}

func TestDecodeAnswer(t *testing.T) {
	for _, tc := range []struct {
		body         string
		list, direct bool
		want         answer
	}{
		{`{"id":"a","version":3,"name":"x"}`, false, false, answer{ids: []string{"a"}, version: 3}},
		{`{"_index":"i","found":true,"_source":{"id":"a","version":3}}`, false, true, answer{ids: []string{"a"}, version: 3}},
		{`{"items":[{"id":"a","version":1},{"id":"b","version":2}],"page":1,"limit":20,"total":9}`, true, false, answer{ids: []string{"a", "b"}, total: 9, version: 3}},
		{`{"hits":{"total":{"value":9},"hits":[{"_source":{"id":"a","version":1}},{"_source":{"id":"b","version":2}}]}}`, true, true, answer{ids: []string{"a", "b"}, total: 9, version: 3}},
	} {
		got, err := decodeAnswer([]byte(tc.body), tc.list, tc.direct)
		if err != nil || got.total != tc.want.total || got.version != tc.want.version || len(got.ids) != len(tc.want.ids) || got.ids[0] != tc.want.ids[0] {
			t.Errorf("%s: %+v, %v; want %+v", tc.body, got, err, tc.want)
		}
	}
	if _, err := decodeAnswer([]byte(`{"items":`), true, false); err == nil {
		t.Error("a cut answer decoded")
	}
}
