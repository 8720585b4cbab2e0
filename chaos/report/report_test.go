package report

import (
	"strings"
	"testing"
	"time"

	"cqrsflow/chaos/checker"
	"cqrsflow/chaos/history"
	"cqrsflow/chaos/nemesis"
)

func TestOpOutcome(t *testing.T) {
	for _, tc := range []struct {
		attempts        []history.Attempt
		outcome, detail string
	}{
		{[]history.Attempt{{Err: "timeout: x"}, {Status: 201, Headers: map[string]string{history.HeaderReplayed: "true"}}}, Acked, "replayed"},
		{[]history.Attempt{{Status: 409, Resp: []byte(`{"error":{"code":"version_conflict"}}`)}}, Refused, "409 version_conflict"},
		{[]history.Attempt{{Status: 503}, {Err: "timeout: y"}}, Ambiguous, "timeout"},
		{[]history.Attempt{{Err: "connection reset"}}, Ambiguous, "no answer"},
	} {
		o, d := OpOutcome(tc.attempts)
		if o != tc.outcome || d != tc.detail {
			t.Errorf("%+v: %s/%s, want %s/%s", tc.attempts, o, d, tc.outcome, tc.detail)
		}
	}
}

// A failed run's report names the seed and how to reproduce it, every
// fault with its time, the operations by outcome, each invariant, and the
// first violation with its key's history and logs.
func TestRenderFailedRun(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	r := &Run{Seed: 99, RunID: "abc", Window: time.Minute, HealedAt: t0.Add(70 * time.Second), WorkloadEnd: t0.Add(80 * time.Second),
		Started: t0, Ended: t0.Add(2 * time.Minute),
		Reproduce: "make chaos CHAOS_SEED=99", Schedule: []nemesis.Step{{Kind: nemesis.Kill, Target: "api"}},
		Faults: []history.Fault{{Seq: 1, Kind: nemesis.Kill, Target: "api", Start: t0.Add(5 * time.Second), Healed: t0.Add(7 * time.Second),
			Verified: []string{"api pid 1 gone after SIGKILL"}}},
		Attempts: []history.Attempt{{Op: 1, N: 1, Type: history.UpdateProduct, ID: "p1", Method: "PUT", Path: "/v1/products/p1", Status: 200,
			Resp: []byte(`{"id":"p1","version":2}`), Start: t0.Add(6 * time.Second)}},
		Results: []checker.Result{{ID: "ack-durable", Desc: "acks are durable", Checked: 1,
			Violations: []checker.Violation{{Key: "p1", Msg: "version 2 missing", At: t0.Add(6 * time.Second)}}}, {ID: "kafka-order", Checked: 3}},
	}
	if !r.Failed() {
		t.Fatal("a run with a violation did not fail")
	}
	inv, v, _ := r.First()
	r.Failure = &Failure{Invariant: inv, Violation: v, History: r.Attempts, Store: []string{"p1 v1 ProductCreated"},
		Logs: []Excerpt{{Process: "api", File: "api.log", Lines: []string{`{"msg":"http request","path":"/v1/products/p1"}`}}}}
	var b strings.Builder
	Render(&b, r)
	out := b.String()
	for _, want := range []string{"— FAIL", "seed        99", "workload    1m20s: faults planned in the first 1m0s, the last healed at +1m10s, then 10s without faults", "make chaos CHAOS_SEED=99", "+     5s  kill            api",
		"api pid 1 gone after SIGKILL", "update_product", "ack-durable                1 checked  FAILED (1 violations)",
		"p1 at +6s: version 2 missing", "kafka-order                3 checked  ok", "First violation: ack-durable on p1",
		"op 1/1 PUT /v1/products/p1", "p1 v1 ProductCreated", "Log of api", `"path":"/v1/products/p1"`, "by kind: kill 1"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
}
