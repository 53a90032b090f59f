package exporter

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	colmetrics "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	metricspb "go.opentelemetry.io/proto/otlp/metrics/v1"
	"google.golang.org/grpc"

	"github.com/blindspot-dev/blindspot/aggregator"
)

// recorder is an OTLP gRPC receiver that keeps what it was sent, decoded
// by the official protos.
type recorder struct {
	colmetrics.UnimplementedMetricsServiceServer
	mu   sync.Mutex
	reqs []*colmetrics.ExportMetricsServiceRequest
}

func (r *recorder) Export(_ context.Context, req *colmetrics.ExportMetricsServiceRequest) (*colmetrics.ExportMetricsServiceResponse, error) {
	r.mu.Lock()
	r.reqs = append(r.reqs, req)
	r.mu.Unlock()
	return &colmetrics.ExportMetricsServiceResponse{}, nil
}

func serveRecorder(t *testing.T) (*recorder, string) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &recorder{}
	s := grpc.NewServer()
	colmetrics.RegisterMetricsServiceServer(s, r)
	go s.Serve(l)
	t.Cleanup(s.Stop)
	return r, "http://" + l.Addr().String()
}

func stringAttrs(kvs []*commonpb.KeyValue) map[string]string {
	m := map[string]string{}
	for _, kv := range kvs {
		m[kv.GetKey()] = kv.GetValue().GetStringValue()
	}
	return m
}

// TestOTLPInstrumentsOnTheWire exports through the real gRPC exporter and
// checks, as a collector decodes them: UpDownCounters as non-monotonic
// cumulative Sums (also under the delta preference), gauges as Gauges, a
// counter with a fraction as a double, integer counters as integers; the
// scope's name and version; the resource's schema URL and attributes, the
// agent's OTEL_RESOURCE_ATTRIBUTES under the program's own, under what
// blindspot established.
func TestOTLPInstrumentsOnTheWire(t *testing.T) {
	upDown := &aggregator.Metric{Name: "go_goroutine_count", OTelName: "go.goroutine.count", Unit: "{goroutine}", Kind: aggregator.Gauge, UpDown: true, PerInstance: true}
	gauge := &aggregator.Metric{Name: "process_uptime_seconds", OTelName: "process.uptime", Unit: "s", Kind: aggregator.Gauge, PerInstance: true}
	cpu := &aggregator.Metric{Name: "process_cpu_time_seconds_total", OTelName: "process.cpu.time", Unit: "s", Kind: aggregator.Counter, Labels: []string{"cpu_mode"}, Float: true, PerInstance: true}
	cycles := &aggregator.Metric{Name: "go_memory_gc_cycles_total", OTelName: "go.memory.gc.cycles", Unit: "{gc_cycle}", Kind: aggregator.Counter, PerInstance: true}
	agg := aggregator.New([]*aggregator.Metric{upDown, gauge, cpu, cycles}, aggregator.Options{})
	sh := agg.Shard(0)
	start := time.Unix(1700000000, 0)
	id := agg.AddTarget(aggregator.Target{PID: 42, Service: "cart", Namespace: "shop", Exe: "/bin/cart", GoVersion: "go1.26.8", Start: start,
		Resource: map[string]string{"service.version": "2.1", "deployment.environment.name": "staging", "process.pid": "1"}})
	user := aggregator.Labels{sh.InternString("user")}

	rec, endpoint := serveRecorder(t)
	env := map[string]string{
		"OTEL_RESOURCE_ATTRIBUTES": "k8s.cluster.name=eu%2D1, deployment.environment.name=prod, service.name=blindspot, host.name=elsewhere",
	}
	opts, _, err := OTLPFromEnv(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	opts = opts.Merge(OTLPOptions{Protocol: ProtocolGRPC, Endpoint: endpoint, Temporality: TemporalityDelta, Timeout: 5 * time.Second, Logger: discardLogger()})
	o, err := NewOTLP(context.Background(), agg, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer o.exp.Shutdown(context.Background())

	for round, v := range []struct{ goroutines, cpu float64 }{{7, 1.25}, {5, 2.75}} {
		sh.Set(upDown, id, aggregator.Labels{}, v.goroutines)
		sh.Set(gauge, id, aggregator.Labels{}, 30)
		sh.SetTotalFloat(cpu, id, user, v.cpu)
		sh.SetTotal(cycles, id, aggregator.Labels{}, uint64(3*(round+1)))
		if err := o.Export(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.reqs) != 2 {
		t.Fatalf("%d requests, want 2", len(rec.reqs))
	}
	for round, req := range rec.reqs {
		rms := req.GetResourceMetrics()
		if len(rms) != 1 || len(rms[0].GetScopeMetrics()) != 1 {
			t.Fatalf("round %d: %d resources", round, len(rms))
		}
		rm := rms[0]
		if rm.GetSchemaUrl() != SchemaURL {
			t.Errorf("resource schema URL %q, want %q", rm.GetSchemaUrl(), SchemaURL)
		}
		res := stringAttrs(rm.GetResource().GetAttributes())
		want := map[string]string{
			"k8s.cluster.name":            "eu-1",    // the agent's, percent-decoded
			"deployment.environment.name": "staging", // the program's over the agent's
			"service.version":             "2.1",
			"service.name":                "cart", // blindspot's over both
			"service.namespace":           "shop",
			"host.name":                   hostname,
			"service.instance.id":         hostname + ":42",
		}
		for k, w := range want {
			if res[k] != w {
				t.Errorf("resource %s = %q, want %q", k, res[k], w)
			}
		}
		for _, kv := range rm.GetResource().GetAttributes() {
			if kv.GetKey() == "process.pid" && kv.GetValue().GetIntValue() != 42 {
				t.Errorf("process.pid %v, want 42 (blindspot's over the program's)", kv.GetValue())
			}
		}
		sm := rm.GetScopeMetrics()[0]
		if sm.GetScope().GetName() != "github.com/blindspot-dev/blindspot" || sm.GetScope().GetVersion() != Version || Version == "" {
			t.Errorf("scope %v, want version %q", sm.GetScope(), Version)
		}
		byName := map[string]*metricspb.Metric{}
		for _, m := range sm.GetMetrics() {
			byName[m.GetName()] = m
		}
		if s := byName["go.goroutine.count"].GetSum(); s == nil || s.GetIsMonotonic() ||
			s.GetAggregationTemporality() != metricspb.AggregationTemporality_AGGREGATION_TEMPORALITY_CUMULATIVE ||
			len(s.GetDataPoints()) != 1 || s.GetDataPoints()[0].GetAsDouble() != []float64{7, 5}[round] ||
			s.GetDataPoints()[0].GetStartTimeUnixNano() != uint64(start.UnixNano()) {
			t.Errorf("round %d: go.goroutine.count %v, want a non-monotonic cumulative Sum of %v", round, byName["go.goroutine.count"], []float64{7, 5}[round])
		}
		if g := byName["process.uptime"].GetGauge(); g == nil || len(g.GetDataPoints()) != 1 || g.GetDataPoints()[0].GetAsDouble() != 30 {
			t.Errorf("process.uptime %v, want a Gauge of 30", byName["process.uptime"])
		}
		wantCPU := []float64{1.25, 1.5}[round] // deltas
		if s := byName["process.cpu.time"].GetSum(); s == nil || !s.GetIsMonotonic() ||
			s.GetAggregationTemporality() != metricspb.AggregationTemporality_AGGREGATION_TEMPORALITY_DELTA ||
			len(s.GetDataPoints()) != 1 || s.GetDataPoints()[0].GetValue() == nil ||
			s.GetDataPoints()[0].GetAsDouble() != wantCPU || stringAttrs(s.GetDataPoints()[0].GetAttributes())["cpu.mode"] != "user" {
			t.Errorf("round %d: process.cpu.time %v, want a monotonic delta Sum of the double %v", round, byName["process.cpu.time"], wantCPU)
		}
		if s := byName["go.memory.gc.cycles"].GetSum(); s == nil || !s.GetIsMonotonic() || len(s.GetDataPoints()) != 1 {
			t.Errorf("go.memory.gc.cycles %v", byName["go.memory.gc.cycles"])
		} else if _, isInt := s.GetDataPoints()[0].GetValue().(*metricspb.NumberDataPoint_AsInt); !isInt || s.GetDataPoints()[0].GetAsInt() != 3 {
			t.Errorf("round %d: go.memory.gc.cycles %v, want the integer delta 3", round, s.GetDataPoints()[0])
		}
	}
}

func TestParseResourceAttributes(t *testing.T) {
	got := ParseResourceAttributes(" a=1 ,b = x%20y,, c, =d, e=%zz,f=")
	want := map[string]string{"a": "1", "b": "x y", "e": "%zz", "f": ""}
	if len(got) != len(want) {
		t.Errorf("%v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
}
