//go:build integration

package main_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kgo"
	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"

	"cqrsflow/internal/envelope"
	"cqrsflow/internal/testenv"
)

// otlpSpan is what the test keeps of an exported span.
type otlpSpan struct {
	service, name, traceID string
	links                  []string // linked trace ids
}

// otlpReceiver is a minimal OTLP/HTTP trace receiver (protobuf): it keeps
// every span it is sent.
type otlpReceiver struct {
	mu    sync.Mutex
	spans []otlpSpan
	bad   []string
}

func (o *otlpReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/v1/traces" {
		http.NotFound(w, r)
		return
	}
	var body io.Reader = r.Body
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		body = zr
	}
	b, err := io.ReadAll(body)
	var req coltrace.ExportTraceServiceRequest
	if err == nil {
		err = proto.Unmarshal(b, &req)
	}
	if err != nil {
		o.mu.Lock()
		o.bad = append(o.bad, err.Error())
		o.mu.Unlock()
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	o.mu.Lock()
	for _, rs := range req.GetResourceSpans() {
		service := ""
		for _, a := range rs.GetResource().GetAttributes() {
			if a.GetKey() == "service.name" {
				service = a.GetValue().GetStringValue()
			}
		}
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				sp := otlpSpan{service: service, name: s.GetName(), traceID: hex.EncodeToString(s.GetTraceId())}
				for _, l := range s.GetLinks() {
					sp.links = append(sp.links, hex.EncodeToString(l.GetTraceId()))
				}
				o.spans = append(o.spans, sp)
			}
		}
	}
	o.mu.Unlock()
	out, _ := proto.Marshal(&coltrace.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}

// inTrace returns the "service/name" of the spans of traceID.
func (o *otlpReceiver) inTrace(traceID string) map[string]bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := map[string]bool{}
	for _, s := range o.spans {
		if s.traceID == traceID {
			out[s.service+"/"+s.name] = true
		}
	}
	return out
}

// A request with a known traceparent through the real api, outbox-relay
// and projector processes: each exports spans of that trace to the OTLP
// receiver (request, append, publish, projector batch), and the
// projector's end-to-end histogram carries the trace id as an exemplar.
// A malformed traceparent is answered as without one, and a Kafka record
// with malformed trace headers is projected.
func TestTraceAcrossProcesses(t *testing.T) {
	recv := &otlpReceiver{}
	collector := httptest.NewServer(recv)
	t.Cleanup(collector.Close)
	otel := []string{"OTEL_EXPORTER_OTLP_ENDPOINT=" + collector.URL, "OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf",
		"OTEL_BSP_SCHEDULE_DELAY=100", "OTEL_TRACES_SAMPLER=parentbased_always_on"}

	st := startE2E(t, e2eOptions{partitions: 1, env: otel, projector: []string{"PROJECTIONS=products"}})
	name, projAddr, api := st.name, st.projAddr, st.api

	traceID := strings.ReplaceAll(uuid.NewString(), "-", "")
	parent := "00-" + traceID + "-00f067aa0ba902b7-01"
	var lamp written
	if st := api.do(t, "POST", "/v1/products", map[string]any{"name": "Traced lamp", "price": 10, "stock": 1},
		map[string]string{"traceparent": parent, "tracestate": "cqrsflow=test"}, &lamp); st != 201 {
		t.Fatalf("create: %d", st)
	}
	want := []string{"cqrsflow-api/POST /v1/products", "cqrsflow-api/eventstore.append",
		"cqrsflow-outbox-relay/relay.publish", "cqrsflow-projector/projector.apply"}
	waitFor(t, 60*time.Second, "spans of the trace from api, relay and projector", func() bool {
		got := recv.inTrace(traceID)
		for _, w := range want {
			if !got[w] {
				return false
			}
		}
		return true
	})

	// The exemplar of the end-to-end histogram leads to the trace.
	req, _ := http.NewRequest("GET", "http://"+projAddr+"/metrics", nil)
	req.Header.Set("Accept", "application/openmetrics-text; version=1.0.0")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if !bytes.Contains(body, []byte(`trace_id="`+traceID+`"`)) {
		t.Errorf("no exemplar with trace %s in the projector's OpenMetrics:\n%s", traceID, grepLines(string(body), "end_to_end"))
	}

	// Malformed traceparent: a normal answer, in a new trace.
	var other written
	if st := api.do(t, "POST", "/v1/products", map[string]any{"name": "Untraced lamp", "price": 10, "stock": 1},
		map[string]string{"traceparent": "00-" + traceID + "-0000000000000000-01", "tracestate": "=,=,="}, &other); st != 201 {
		t.Fatalf("create with a malformed traceparent: %d", st)
	}
	// A record with malformed trace headers, produced by hand, is projected.
	bad := uuid.NewString()
	value := fmt.Sprintf(`{"event_id":%q,"event_type":"ProductCreated","schema_version":1,"aggregate_type":"product","aggregate_id":%q,"version":1,`+
		`"occurred_at":"2026-01-01T00:00:00Z","recorded_at":%q,"global_position":1,"payload":{"name":"Hand-made","description":"","price":1,"stock":1},"metadata":{}}`,
		uuid.NewString(), bad, time.Now().UTC().Format(time.RFC3339Nano))
	cl, err := kgo.NewClient(kgo.SeedBrokers(testenv.KafkaBrokers()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	pctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := cl.ProduceSync(pctx, &kgo.Record{Topic: envelope.Topic(name, "product"), Key: []byte(bad), Value: []byte(value),
		Headers: []kgo.RecordHeader{{Key: "traceparent", Value: []byte("\xff\xfe garbage")}, {Key: "tracestate", Value: []byte(strings.Repeat("x=", 3000))}}}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{other.ID, bad} {
		if st := api.do(t, "GET", "/v1/products/"+id+"?min_version=1&wait=10s", nil, nil, nil); st != 200 {
			t.Errorf("product %s not projected: %d", id, st)
		}
	}
	recv.mu.Lock()
	defer recv.mu.Unlock()
	if len(recv.bad) > 0 {
		t.Errorf("receiver could not decode exports: %v", recv.bad)
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
