package exporter

import (
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/blindspot-dev/blindspot/aggregator"
)

func newTestServer(t testing.TB, agg *aggregator.Aggregator, opts Options) *Server {
	t.Helper()
	opts.Logger = newDiscardLogger(io.Discard)
	s, err := New(agg, detachedState(), opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// scrapeFamilies parses a text scrape of path.
func scrapeFamilies(t *testing.T, s *Server, path string) map[string]bool {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(get(t, s, path)))
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for n := range fams {
		names[n] = true
	}
	return names
}

func TestTelemetryPath(t *testing.T) {
	h, _ := testMetrics()
	s := newTestServer(t, aggregator.New([]*aggregator.Metric{h}, aggregator.Options{}), Options{TelemetryPath: "/agent/metrics"})
	if !scrapeFamilies(t, s, "/agent/metrics")["blindspot_targets"] {
		t.Error("/agent/metrics lacks blindspot_targets")
	}
	w := httptest.NewRecorder()
	s.srv.Handler.ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
	if w.Code != http.StatusNotFound {
		t.Errorf("GET /metrics with --web.telemetry-path=/agent/metrics: %d, want 404", w.Code)
	}
	if page := get(t, s, "/"); !strings.Contains(page, `<a href="agent/metrics">/agent/metrics</a>`) {
		t.Errorf("status page does not link the telemetry path:\n%s", page)
	}
	for _, p := range []string{"metrics", "/", "/healthz", "/targets", "/a b"} {
		if _, err := New(aggregator.New(nil, aggregator.Options{}), detachedState(), Options{TelemetryPath: p}); err == nil {
			t.Errorf("telemetry path %q accepted", p)
		}
	}
}

// The agent's own go_* and process_* series are on /metrics by default and
// off with DisableExporterMetrics; blindspot_* series stay either way.
func TestDisableExporterMetrics(t *testing.T) {
	h, _ := testMetrics()
	agg := aggregator.New([]*aggregator.Metric{h}, aggregator.Options{})
	for _, disable := range []bool{false, true} {
		names := scrapeFamilies(t, newTestServer(t, agg, Options{DisableExporterMetrics: disable}), "/metrics")
		for _, own := range []string{"go_goroutines", "go_gc_duration_seconds", "process_cpu_seconds_total", "process_open_fds"} {
			if names[own] == disable {
				t.Errorf("disable=%v: %s present=%v", disable, own, names[own])
			}
		}
		for _, self := range []string{"blindspot_build_info", "blindspot_targets", "blindspot_events_total"} {
			if !names[self] {
				t.Errorf("disable=%v: %s missing", disable, self)
			}
		}
		for n := range names {
			if disable && (strings.HasPrefix(n, "go_") || strings.HasPrefix(n, "process_")) {
				t.Errorf("disable=true: the agent's own %s is scraped", n)
			}
		}
	}
}

func TestBuildInfo(t *testing.T) {
	s := newTestServer(t, aggregator.New(nil, aggregator.Options{}), Options{})
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(get(t, s, "/metrics")))
	if err != nil {
		t.Fatal(err)
	}
	f := fams["blindspot_build_info"]
	if f == nil || len(f.Metric) != 1 || f.Metric[0].GetGauge().GetValue() != 1 {
		t.Fatalf("blindspot_build_info = %v", f)
	}
	labels := map[string]string{}
	for _, l := range f.Metric[0].Label {
		labels[l.GetName()] = l.GetValue()
	}
	want := map[string]string{"version": "dev", "goversion": runtime.Version(), "goos": runtime.GOOS, "goarch": runtime.GOARCH}
	for k, v := range want {
		if labels[k] != v {
			t.Errorf("label %s = %q, want %q (all: %v)", k, labels[k], v, labels)
		}
	}
	for _, k := range []string{"revision", "branch"} {
		if labels[k] == "" {
			t.Errorf("label %s empty (all: %v)", k, labels)
		}
	}
}

// BenchmarkScrapeExporterMetrics: one text scrape of the whole endpoint
// with the agent's own go_*/process_* collectors on and off, for an agent
// alone (no program) and for 10 programs with 1,000 series.
func BenchmarkScrapeExporterMetrics(b *testing.B) {
	for _, size := range []struct {
		name             string
		programs, series int
	}{{"agent_only", 0, 0}, {"10programs_1kseries", 10, 1000}} {
		agg := aggregator.New(nil, aggregator.Options{})
		if size.programs > 0 {
			agg = fillBench(b, size.programs, size.series)
		}
		for _, disable := range []bool{false, true} {
			name := size.name + "/exporter_metrics=on"
			if disable {
				name = size.name + "/exporter_metrics=off"
			}
			b.Run(name, func(b *testing.B) {
				s := newTestServer(b, agg, Options{DisableExporterMetrics: disable})
				b.ReportAllocs()
				var n int
				for b.Loop() {
					w := &countingWriter{header: http.Header{}}
					s.srv.Handler.ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
					n = w.n
				}
				b.ReportMetric(float64(n), "bytes/scrape")
			})
		}
	}
}

func TestListenVsock(t *testing.T) {
	for _, bad := range []string{"vsock://9464", "vsock://:port", "vsock://:99999999999"} {
		if l, err := listen(bad); err == nil {
			l.Close()
			t.Errorf("%s accepted", bad)
		}
	}
	l, err := listen("vsock://:0")
	if err != nil {
		t.Skipf("no vsock here: %v", err)
	}
	defer l.Close()
	if !strings.HasPrefix(l.Addr().Network(), "vsock") {
		t.Errorf("vsock://:0 listens on %s %s", l.Addr().Network(), l.Addr())
	}
}
