package exporter

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	colmetrics "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	"google.golang.org/grpc"

	"github.com/blindspot-dev/blindspot/aggregator"
)

func testMetrics() (*aggregator.Metric, *aggregator.Metric) {
	h := &aggregator.Metric{Name: "http_server_request_duration_seconds", OTelName: "http.server.request.duration", Help: "Duration.", Unit: "s",
		Kind: aggregator.Histogram, Labels: []string{"http_request_method", "http_response_status_code", "http_route"}, Buckets: aggregator.DurationBuckets}
	c := &aggregator.Metric{Name: "go_memory_gc_cycles_total", OTelName: "go.memory.gc.cycles", Help: "GC cycles.", Unit: "{cycle}", Kind: aggregator.Counter}
	return h, c
}

// promTotals gathers the collector's output: per metric name, the summed
// count of a histogram or value of a counter, for service svc.
func promTotals(t *testing.T, reg *prometheus.Registry, svc string) map[string]float64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range fams {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "service_name" && l.GetValue() == svc {
					out[mf.GetName()] += float64(m.GetHistogram().GetSampleCount()) + m.GetCounter().GetValue()
				}
			}
		}
	}
	return out
}

// TestReplicaExpiryKeepsCountersMonotonic: two replicas of a service; one
// exits and expires (on the agent's expiry tick, Aggregator.Expire); the
// service's counters must not go backwards, and go away with the last
// replica.
func TestReplicaExpiryKeepsCountersMonotonic(t *testing.T) {
	h, c := testMetrics()
	agg := aggregator.New([]*aggregator.Metric{h, c}, aggregator.Options{Grace: time.Minute})
	col := newProgramCollector(agg, nil)
	now := time.Unix(1000, 0)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(col)
	sh := agg.Shard(0)
	a := agg.AddTarget(aggregator.Target{PID: 1, Service: "svc", Start: now})
	b := agg.AddTarget(aggregator.Target{PID: 2, Service: "svc", Start: now})
	l := aggregator.Labels{sh.InternString("GET"), sh.Status(200), sh.InternString("/x")}
	for i := 0; i < 30; i++ {
		sh.Observe(h, a, l, 0.01)
	}
	for i := 0; i < 20; i++ {
		sh.Observe(h, b, l, 0.02)
	}
	sh.SetTotal(c, a, aggregator.Labels{}, 7)
	sh.SetTotal(c, b, aggregator.Labels{}, 5)
	check := func(stage string, wantH, wantC float64) {
		t.Helper()
		got := promTotals(t, reg, "svc")
		if got[h.Name] != wantH || got[c.Name] != wantC {
			t.Errorf("%s: histogram %v counter %v, want %v %v", stage, got[h.Name], got[c.Name], wantH, wantC)
		}
	}
	check("both running", 50, 12)
	agg.TargetExited(a, now)
	check("a in grace", 50, 12)
	now = now.Add(2 * time.Minute)
	agg.Expire(now)            // the agent's expiry tick
	check("a expired", 50, 12) // folded into the service's totals
	sh.Observe(h, b, l, 0.02)
	check("b goes on", 51, 12)
	agg.TargetExited(b, now)
	now = now.Add(2 * time.Minute)
	agg.Expire(now)
	check("all expired", 0, 0)
	// A restart starts fresh.
	r := agg.AddTarget(aggregator.Target{PID: 3, Service: "svc", Start: now})
	sh.Observe(h, r, l, 0.02)
	check("restarted", 1, 0)
}

// TestReadingDoesNotExpire: a process past its grace period stays in
// /metrics and in OTLP exports, however often they read, until the agent's
// expiry tick (Aggregator.Expire) drops it: reading changes no state.
func TestReadingDoesNotExpire(t *testing.T) {
	h, _ := testMetrics()
	agg := aggregator.New([]*aggregator.Metric{h}, aggregator.Options{Grace: time.Minute})
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(newProgramCollector(agg, nil))
	f := &fakeExporter{}
	o := newOTLPWith(agg, f, OTLPOptions{Temporality: TemporalityCumulative, Histogram: HistogramExplicit, Timeout: time.Second})
	sh := agg.Shard(0)
	start := time.Now().Add(-time.Hour)
	id := agg.AddTarget(aggregator.Target{PID: 7, Service: "gone", Start: start})
	l := aggregator.Labels{sh.InternString("GET"), sh.Status(200), sh.InternString("/x")}
	for i := 0; i < 3; i++ {
		sh.Observe(h, id, l, 0.01)
	}
	agg.TargetExited(id, start) // an hour ago: long past the grace period
	for i := 0; i < 3; i++ {
		if got := promTotals(t, reg, "gone")[h.Name]; got != 3 {
			t.Fatalf("scrape %d: %v requests, want 3 (a scrape expired the process)", i, got)
		}
		if err := o.Export(context.Background()); err != nil {
			t.Fatal(err)
		}
		if len(f.got) != i+1 {
			t.Fatalf("export %d: %d resources sent in all, want %d (an export expired the process)", i, len(f.got), i+1)
		}
	}
	if len(agg.Targets()) != 1 {
		t.Fatalf("targets %+v, want the exited process kept until the expiry tick", agg.Targets())
	}

	agg.Expire(time.Now()) // the agent's expiry tick
	if got := promTotals(t, reg, "gone")[h.Name]; got != 0 {
		t.Errorf("after the expiry tick: %v requests, want the service gone", got)
	}
	if err := o.Export(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(f.got) != 3 {
		t.Errorf("after the expiry tick: %d resources sent in all, want still 3", len(f.got))
	}
}

type fakeExporter struct{ got []metricdata.ResourceMetrics }

func (f *fakeExporter) Export(_ context.Context, rm *metricdata.ResourceMetrics) error {
	f.got = append(f.got, *rm)
	return nil
}
func (f *fakeExporter) Shutdown(context.Context) error { return nil }

func TestOTLPDeltaAndAttributes(t *testing.T) {
	h, c := testMetrics()
	agg := aggregator.New([]*aggregator.Metric{h, c}, aggregator.Options{})
	sh := agg.Shard(0)
	id := agg.AddTarget(aggregator.Target{PID: 42, Service: "svc", Namespace: "ns", Exe: "/bin/svc", GoVersion: "go1.26.8", Start: time.Now()})
	l := aggregator.Labels{sh.InternString("GET"), sh.Status(200), sh.InternString("/x")}
	f := &fakeExporter{}
	o := newOTLPWith(agg, f, OTLPOptions{Temporality: TemporalityDelta, Histogram: HistogramExponential, Timeout: time.Second})
	var sum uint64
	for round := 1; round <= 3; round++ {
		for i := 0; i < round*10; i++ {
			sh.Observe(h, id, l, 0.001*float64(i+1))
		}
		if err := o.Export(context.Background()); err != nil {
			t.Fatal(err)
		}
		rm := f.got[len(f.got)-1]
		if v, _ := rm.Resource.Set().Value("service.instance.id"); v.AsString() != hostname+":42" {
			t.Errorf("service.instance.id %q", v.AsString())
		}
		if v, _ := rm.Resource.Set().Value("service.namespace"); v.AsString() != "ns" {
			t.Errorf("service.namespace %q", v.AsString())
		}
		m := rm.ScopeMetrics[0].Metrics[0]
		eh := m.Data.(metricdata.ExponentialHistogram[float64])
		dp := eh.DataPoints[0]
		if eh.Temporality != metricdata.DeltaTemporality || dp.Count != uint64(round*10) {
			t.Errorf("round %d: temporality %v count %d", round, eh.Temporality, dp.Count)
		}
		var n uint64 = dp.ZeroCount
		for _, b := range dp.PositiveBucket.Counts {
			n += b
		}
		if n != dp.Count {
			t.Errorf("round %d: buckets hold %d of %d", round, n, dp.Count)
		}
		if v, _ := dp.Attributes.Value("http.response.status_code"); v.AsInt64() != 200 {
			t.Errorf("status attribute %v", v.Emit())
		}
		if _, ok := dp.Attributes.Value("http.request.method"); !ok {
			t.Errorf("attributes %v", dp.Attributes.Encoded(nil))
		}
		sum += dp.Count
	}
	if sum != 60 {
		t.Errorf("deltas add up to %d, want 60", sum)
	}
}

func TestOTLPFromEnv(t *testing.T) {
	env := map[string]string{
		"OTEL_EXPORTER_OTLP_ENDPOINT":                              "http://c:4317",
		"OTEL_EXPORTER_OTLP_PROTOCOL":                              "grpc",
		"OTEL_METRIC_EXPORT_INTERVAL":                              "15000",
		"OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE":        "Delta",
		"OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION": "base2_exponential_bucket_histogram",
	}
	o, on, err := OTLPFromEnv(func(k string) string { return env[k] })
	if err != nil || !on || o.Protocol != "grpc" || o.Interval != 15*time.Second || o.Temporality != "delta" || o.Histogram != HistogramExponential {
		t.Errorf("%+v %v %v", o, on, err)
	}
	env["OTEL_METRICS_EXPORTER"] = "none"
	if _, on, _ := OTLPFromEnv(func(k string) string { return env[k] }); on {
		t.Error("OTEL_METRICS_EXPORTER=none left it on")
	}
	env["OTEL_EXPORTER_OTLP_PROTOCOL"] = "http/json"
	if _, _, err := OTLPFromEnv(func(k string) string { return env[k] }); err == nil {
		t.Error("http/json accepted")
	}
}

// fillBench makes programs processes with series series in all, spread
// over the histogram (most) and a counter, in two shards.
func fillBench(b *testing.B, programs, total int) *aggregator.Aggregator {
	h, c := testMetrics()
	h.Limit, c.Limit = total, total
	agg := aggregator.New([]*aggregator.Metric{h, c}, aggregator.Options{Shards: 2})
	perProgram := total / programs
	for p := 0; p < programs; p++ {
		id := agg.AddTarget(aggregator.Target{PID: 1000 + p, Service: "svc" + strconv.Itoa(p), Exe: "/bin/x", Start: time.Now()})
		for i := 0; i < perProgram-1; i++ {
			sh := agg.Shard(i % 2)
			l := aggregator.Labels{sh.InternString("GET"), sh.Status(200), sh.InternString(fmt.Sprintf("/route/%d", i))}
			for k := 0; k < 20; k++ {
				sh.Observe(h, id, l, 0.0005*float64(k+1)*float64(i%7+1))
			}
		}
		agg.Shard(0).SetTotal(c, id, aggregator.Labels{}, 100)
	}
	return agg
}

// BenchmarkScrape50Programs20kSeries: one /metrics scrape (text format) of
// 50 programs with 20,000 series in all.
func BenchmarkScrape50Programs20kSeries(b *testing.B) {
	agg := fillBench(b, 50, 20000)
	reg := prometheus.NewRegistry()
	reg.MustRegister(newProgramCollector(agg, nil))
	h := promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
	b.ReportAllocs()
	b.ResetTimer()
	var size int
	for i := 0; i < b.N; i++ {
		w := &countingWriter{header: http.Header{}}
		h.ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
		size = w.n
	}
	b.ReportMetric(float64(size), "bytes/scrape")
}

// BenchmarkScrapeProtobuf50Programs20kSeries is the same scrape in
// protobuf, with native histograms.
func BenchmarkScrapeProtobuf50Programs20kSeries(b *testing.B) {
	agg := fillBench(b, 50, 20000)
	reg := prometheus.NewRegistry()
	reg.MustRegister(newProgramCollector(agg, nil))
	h := promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
	b.ReportAllocs()
	b.ResetTimer()
	var size int
	for i := 0; i < b.N; i++ {
		w := &countingWriter{header: http.Header{}}
		r := httptest.NewRequest("GET", "/metrics", nil)
		r.Header.Set("Accept", "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited")
		h.ServeHTTP(w, r)
		size = w.n
	}
	b.ReportMetric(float64(size), "bytes/scrape")
}

// countingWriter stands for the scraper's connection: it counts the bytes
// and keeps none, so that the benchmark measures the agent, not a buffer
// growing in the test.
type countingWriter struct {
	header http.Header
	n      int
}

func (w *countingWriter) Header() http.Header         { return w.header }
func (w *countingWriter) WriteHeader(int)             {}
func (w *countingWriter) Write(p []byte) (int, error) { w.n += len(p); return len(p), nil }

type sink struct {
	colmetrics.UnimplementedMetricsServiceServer
}

func (sink) Export(context.Context, *colmetrics.ExportMetricsServiceRequest) (*colmetrics.ExportMetricsServiceResponse, error) {
	return &colmetrics.ExportMetricsServiceResponse{}, nil
}

// BenchmarkOTLPExportInterval: one export interval (50 programs, 20,000
// series) through the real OTLP gRPC exporter to a loopback receiver.
func BenchmarkOTLPExportInterval(b *testing.B) {
	for _, hist := range []string{HistogramExplicit, HistogramExponential} {
		b.Run(hist, func(b *testing.B) {
			agg := fillBench(b, 50, 20000)
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			s := grpc.NewServer()
			colmetrics.RegisterMetricsServiceServer(s, sink{})
			go s.Serve(l)
			defer s.Stop()
			o, err := NewOTLP(context.Background(), agg, OTLPOptions{Protocol: ProtocolGRPC, Endpoint: "http://" + l.Addr().String(), Histogram: hist, Logger: discardLogger()})
			if err != nil {
				b.Fatal(err)
			}
			defer o.exp.Shutdown(context.Background())
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := o.Export(context.Background()); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func discardLogger() *slogLogger { return newDiscardLogger(io.Discard) }

type slogLogger = slog.Logger

func newDiscardLogger(w io.Writer) *slog.Logger { return slog.New(slog.NewTextHandler(w, nil)) }
