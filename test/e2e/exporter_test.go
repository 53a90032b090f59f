package e2e

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	metricspb "go.opentelemetry.io/proto/otlp/metrics/v1"
)

// driveSlow sends n requests to /slow?ms=ms, 10 at a time.
func driveSlow(t *testing.T, tp *targetProc, n, ms int) {
	t.Helper()
	var wg sync.WaitGroup
	sem := make(chan struct{}, 10)
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			code, _, err := tp.do("GET", "/slow?ms="+strconv.Itoa(ms))
			if err == nil && code != 200 {
				err = fmt.Errorf("status %d", code)
			}
			if err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// TestExporterPrometheusAndOTLPgRPC runs the agent behind TLS and basic auth
// (exporter-toolkit web config), checks that every page is locked, lints a
// real scrape with promtool, has two real Prometheus servers scrape it (one
// with classic histograms over the text format, one with native histograms
// over protobuf) and compares their PromQL answers and an OTLP gRPC
// receiver's data with the traffic driven.
func TestExporterPrometheusAndOTLPgRPC(t *testing.T) {
	requireBPF(t)
	prom := requireTool(t, "/usr/bin/prometheus", "prometheus")
	promtool := requireTool(t, "/usr/bin/promtool", "prometheus")
	v := variantByName(t, "go126-plain")
	recv := newOTLPReceiver()
	grpcURL := recv.serveGRPC(t)
	// The agent's own resource attributes reach every program's resource
	// (not its service.*, which would name the agent).
	t.Setenv("OTEL_RESOURCE_ATTRIBUTES", "k8s.cluster.name=e2e-cluster,deployment.environment.name=agent-default,service.version=agent")
	a := startSecuredAgent(t, fmt.Sprintf("otlp:\n  protocol: grpc\n  endpoint: %s\n  interval: 500ms\n", grpcURL))

	// Every page needs the password, and plain HTTP gets nothing.
	for _, path := range []string{"/metrics", "/targets", "/", "/healthz"} {
		for _, c := range []struct {
			user, pass string
			want       int
		}{{"", "", 401}, {a.user, "wrong", 401}, {a.user, a.pass, 200}} {
			req, _ := http.NewRequest("GET", "https://"+a.addr+path, nil)
			if c.user != "" {
				req.SetBasicAuth(c.user, c.pass)
			}
			resp, err := a.client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != c.want {
				t.Errorf("GET %s as %q/%q: %d, want %d", path, c.user, c.pass, resp.StatusCode, c.want)
			}
		}
		if resp, err := agentClient.Get("http://" + a.addr + path); err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 || bytes.Contains(b, []byte("# HELP")) {
				t.Errorf("plain HTTP GET %s answered %d", path, resp.StatusCode)
			}
		}
	}
	// A client that does not trust the certificate is refused.
	untrusting := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{}}}
	if _, err := untrusting.Get("https://" + a.addr + "/metrics"); err == nil {
		t.Error("a client without the CA reached /metrics")
	}

	tp := startTargetEnv(t, v.exe, uniqueService("prom", v), []string{"OTEL_RESOURCE_ATTRIBUTES=service.version=1.2.3,deployment.environment.name=e2e%20test"})
	a.waitTargeted(t, tp.pid, 10*time.Second)
	// 90 requests of 20ms and 10 of 300ms: p50 is about 20ms, p95 about 300ms.
	driveSlow(t, tp, 90, 20)
	driveSlow(t, tp, 10, 300)
	const want = 100
	svc := tp.service

	countOf := func() (uint64, *dto.MetricFamily) {
		b, _ := a.get(t, "/metrics", "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited")
		fams, err := parseProto(b)
		if err != nil {
			t.Fatal(err)
		}
		mf := fams["http_server_request_duration_seconds"]
		var n uint64
		for _, m := range mf.GetMetric() {
			if labelOf(m, "service_name") == svc {
				n += m.GetHistogram().GetSampleCount()
			}
		}
		return n, mf
	}
	var mf *dto.MetricFamily
	if !waitFor(5*time.Second, func() bool { n, f := countOf(); mf = f; return n == want }) {
		n, _ := countOf()
		t.Fatalf("/metrics count %d, want %d", n, want)
	}

	// Native histograms over protobuf, classic buckets kept, the same counts.
	for _, m := range mf.GetMetric() {
		if labelOf(m, "service_name") != svc {
			continue
		}
		h := m.GetHistogram()
		if h.Schema == nil || len(h.GetPositiveSpan()) == 0 {
			t.Errorf("no native histogram in %v", m)
		}
		if len(h.GetBucket()) != 14 {
			t.Errorf("%d classic buckets, want 14", len(h.GetBucket()))
		}
		var native int64
		var run int64
		for _, d := range h.GetPositiveDelta() {
			run += d
			native += run
		}
		if uint64(native)+h.GetZeroCount() != h.GetSampleCount() {
			t.Errorf("native buckets hold %d+%d, count %d", native, h.GetZeroCount(), h.GetSampleCount())
		}
	}

	// promtool check metrics on a real text scrape: no complaint at all.
	text, hdr := a.get(t, "/metrics", "text/plain;version=0.0.4")
	if ct := hdr.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("text scrape Content-Type %q", ct)
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(text)
	out, err := cmd.CombinedOutput()
	var problems []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		name, _, _ := strings.Cut(line, " ")
		if line == "" || contractCountGauges[name] && strings.HasSuffix(line, `should not have "_count" suffix`) {
			continue
		}
		problems = append(problems, line)
	}
	if len(problems) > 0 || (err != nil && len(out) == 0) {
		if f := os.Getenv("E2E_KEEP_SCRAPE"); f != "" {
			os.WriteFile(f, text, 0o644)
		}
		t.Errorf("promtool check metrics: %v\n%s", err, strings.Join(problems, "\n"))
	}
	// OpenMetrics by negotiation, with units.
	om, hdr := a.get(t, "/metrics", "application/openmetrics-text;version=1.0.0")
	if ct := hdr.Get("Content-Type"); !strings.HasPrefix(ct, "application/openmetrics-text") {
		t.Errorf("OpenMetrics Content-Type %q", ct)
	}
	if !bytes.Contains(om, []byte("# UNIT http_server_request_duration_seconds seconds")) || !bytes.HasSuffix(bytes.TrimSpace(om), []byte("# EOF")) {
		t.Errorf("OpenMetrics scrape lacks the unit or # EOF")
	}
	// HELP on every family, one label set per name.
	pb, _ := a.get(t, "/metrics", "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited")
	all, err := parseProto(pb)
	if err != nil {
		t.Fatal(err)
	}
	assertHelpAndLabelSets(t, all)

	// Two real Prometheus servers scrape the locked endpoint.
	job := fmt.Sprintf(`  - job_name: blindspot
    scheme: https
    tls_config:
      ca_file: %s
    basic_auth:
      username: %s
      password: %s
    static_configs:
      - targets: [%q]
`, a.caFile, a.user, a.pass, a.addr)
	classic := startPrometheus(t, prom, job)
	native := startPrometheus(t, prom, job, "--enable-feature=native-histograms")
	sel := fmt.Sprintf(`{service_name=%q}`, svc)
	classic.waitQuery(t, "sum(http_server_request_duration_seconds_count"+sel+")", 20*time.Second, func(v float64) bool { return v == want })
	p50 := classic.waitQuery(t, "histogram_quantile(0.5, sum by (le) (http_server_request_duration_seconds_bucket"+sel+"))", 5*time.Second, func(float64) bool { return true })
	p95 := classic.waitQuery(t, "histogram_quantile(0.95, sum by (le) (http_server_request_duration_seconds_bucket"+sel+"))", 5*time.Second, func(float64) bool { return true })
	// Classic buckets can only place a quantile within its bucket.
	if p50 <= 0.01 || p50 > 0.025 || p95 <= 0.25 || p95 > 0.5 {
		t.Errorf("classic p50 %.4f (want in (0.01, 0.025]), p95 %.4f (want in (0.25, 0.5])", p50, p95)
	}
	native.waitQuery(t, "histogram_count(sum(http_server_request_duration_seconds"+sel+"))", 20*time.Second, func(v float64) bool { return v == want })
	np50 := native.waitQuery(t, "histogram_quantile(0.5, sum(http_server_request_duration_seconds"+sel+"))", 5*time.Second, func(float64) bool { return true })
	np95 := native.waitQuery(t, "histogram_quantile(0.95, sum(http_server_request_duration_seconds"+sel+"))", 5*time.Second, func(float64) bool { return true })
	// Native buckets are a few percent wide: the quantiles sit at what the
	// handlers slept (plus the server's own few hundred microseconds).
	if np50 < 0.019 || np50 > 0.026 || np95 < 0.28 || np95 > 0.33 {
		t.Errorf("native p50 %.4f (want ~0.020), p95 %.4f (want ~0.300)", np50, np95)
	}
	t.Logf("p50 classic %.4f native %.4f; p95 classic %.4f native %.4f", p50, np50, p95, np95)

	// OTLP over gRPC: the same count, the program as its own Resource.
	var got uint64
	var pts []otlpPoint
	waitFor(10*time.Second, func() bool {
		got, pts = recv.latestCount("http.server.request.duration", tp.pid)
		return got == want
	})
	if got != want {
		t.Fatalf("OTLP gRPC count %d, want %d", got, want)
	}
	checkResource(t, pts[0].resource, tp, v)
	m := pts[0].metric
	if m.GetUnit() != "s" || m.GetHistogram().GetAggregationTemporality().String() != "AGGREGATION_TEMPORALITY_CUMULATIVE" {
		t.Errorf("metric %s unit %q temporality %v", m.GetName(), m.GetUnit(), m.GetHistogram().GetAggregationTemporality())
	}
	for _, p := range pts {
		if p.attrs["http.request.method"] != "GET" || p.attrs["http.route"] != "/slow" || p.attrs["http.response.status_code"] != "200" ||
			p.attrs["url.scheme"] != "http" || p.attrs["network.protocol.version"] != "1.1" {
			t.Errorf("OTLP attributes %v", p.attrs)
		}
		if len(p.hist.GetExplicitBounds()) != 14 || len(p.hist.GetBucketCounts()) != 15 {
			t.Errorf("explicit buckets: %d bounds, %d counts", len(p.hist.GetExplicitBounds()), len(p.hist.GetBucketCounts()))
		}
	}
	if recv.via["grpc"] == 0 {
		t.Error("nothing came over gRPC")
	}
	checkOTLPInstruments(t, recv, tp)
}

// checkOTLPInstruments checks, on the last export that carried the program
// tp, what the semantic conventions make of its runtime metrics: the
// UpDownCounters as non-monotonic cumulative Sums, process.uptime a Gauge,
// process.cpu.time a monotonic Sum of doubles by cpu.mode; the scope's
// version and the resource's schema URL; the agent's and the program's
// own OTEL_RESOURCE_ATTRIBUTES in the resource, the program's first.
func checkOTLPInstruments(t *testing.T, recv *otlpReceiver, tp *targetProc) {
	t.Helper()
	upDown := []string{"go.goroutine.count", "go.memory.used", "go.processor.limit", "go.config.gogc",
		"process.memory.usage", "process.memory.virtual", "process.thread.count", "process.unix.file_descriptor.count",
		"blindspot.go.goroutine.live"}
	var rm *metricspb.ResourceMetrics
	byName := map[string]*metricspb.Metric{}
	// The sampler fills every metric within a second or two of the attach.
	waitFor(10*time.Second, func() bool {
		recv.mu.Lock()
		defer recv.mu.Unlock()
		for i := len(recv.requests) - 1; i >= 0; i-- {
			for _, r := range recv.requests[i].GetResourceMetrics() {
				if kvMap(r.GetResource().GetAttributes())["process.pid"] != strconv.Itoa(tp.pid) {
					continue
				}
				rm, byName = r, map[string]*metricspb.Metric{}
				for _, sm := range r.GetScopeMetrics() {
					for _, m := range sm.GetMetrics() {
						byName[m.GetName()] = m
					}
				}
				for _, n := range append(upDown, "process.cpu.time", "process.uptime") {
					if byName[n] == nil {
						return false
					}
				}
				return true
			}
		}
		return false
	})
	if rm == nil {
		t.Fatal("no OTLP export carried the program")
	}
	if rm.GetSchemaUrl() != "https://opentelemetry.io/schemas/1.44.0" {
		t.Errorf("resource schema URL %q", rm.GetSchemaUrl())
	}
	for _, sm := range rm.GetScopeMetrics() {
		if sm.GetScope().GetName() != "github.com/blindspot-dev/blindspot" || sm.GetScope().GetVersion() == "" {
			t.Errorf("scope %v: want blindspot's name and a version", sm.GetScope())
		}
	}
	res := kvMap(rm.GetResource().GetAttributes())
	for k, w := range map[string]string{
		"k8s.cluster.name":            "e2e-cluster", // the agent's
		"deployment.environment.name": "e2e test",    // the program's over the agent's, decoded
		"service.version":             "1.2.3",       // the program's; the agent's service.* left out
		"service.name":                tp.service,
	} {
		if res[k] != w {
			t.Errorf("resource %s = %q, want %q (all: %v)", k, res[k], w, res)
		}
	}
	for _, n := range upDown {
		s := byName[n].GetSum()
		if s == nil || s.GetIsMonotonic() || s.GetAggregationTemporality() != metricspb.AggregationTemporality_AGGREGATION_TEMPORALITY_CUMULATIVE || len(s.GetDataPoints()) == 0 {
			t.Errorf("%s: %v, want a non-monotonic cumulative Sum", n, byName[n])
		}
	}
	if g := byName["process.uptime"].GetGauge(); g == nil || len(g.GetDataPoints()) != 1 {
		t.Errorf("process.uptime: %v, want a Gauge", byName["process.uptime"])
	}
	modes := map[string]bool{}
	if s := byName["process.cpu.time"].GetSum(); s == nil || !s.GetIsMonotonic() {
		t.Errorf("process.cpu.time: %v, want a monotonic Sum", byName["process.cpu.time"])
	} else {
		for _, dp := range s.GetDataPoints() {
			if _, ok := dp.GetValue().(*metricspb.NumberDataPoint_AsDouble); !ok || dp.GetAsDouble() < 0 {
				t.Errorf("process.cpu.time point %v: want a double", dp)
			}
			modes[kvMap(dp.GetAttributes())["cpu.mode"]] = true
		}
	}
	if len(modes) != 2 || !modes["user"] || !modes["system"] {
		t.Errorf("process.cpu.time modes %v, want user and system", modes)
	}
	if byName["process.open_file_descriptor.count"] != nil {
		t.Error("the deprecated process.open_file_descriptor.count is still sent")
	}
}

// contractCountGauges are gauges whose names the metric contract takes from
// the OpenTelemetry semantic conventions (go.goroutine.count,
// process.unix.file_descriptor.count, ...), which promtool's linter flags
// for their "_count" suffix. They are exactly what both OpenTelemetry to
// Prometheus translations emit, so they are kept (docs/metrics.md): that
// one complaint about these names is tolerated, and any other is a
// failure.
var contractCountGauges = map[string]bool{
	"go_goroutine_count":                 true,
	"process_thread_count":               true,
	"process_unix_file_descriptor_count": true,
	"db_client_connection_count":         true,
}

func labelOf(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

func parseProto(b []byte) (map[string]*dto.MetricFamily, error) {
	out := map[string]*dto.MetricFamily{}
	dec := expfmt.NewDecoder(bytes.NewReader(b), expfmt.NewFormat(expfmt.TypeProtoDelim))
	for {
		mf := &dto.MetricFamily{}
		if err := dec.Decode(mf); err == io.EOF {
			return out, nil
		} else if err != nil {
			return nil, err
		}
		out[mf.GetName()] = mf
	}
}

// assertHelpAndLabelSets checks every family of a scrape has HELP, and
// that all series of a name carry the same label names.
func assertHelpAndLabelSets(t *testing.T, fams map[string]*dto.MetricFamily) {
	t.Helper()
	for name, mf := range fams {
		if mf.GetHelp() == "" {
			t.Errorf("%s has no HELP", name)
		}
		var first string
		for i, m := range mf.GetMetric() {
			var names []string
			for _, l := range m.GetLabel() {
				names = append(names, l.GetName())
			}
			set := strings.Join(names, ",")
			if i == 0 {
				first = set
			} else if set != first {
				t.Errorf("%s has two label sets: {%s} and {%s}", name, first, set)
				break
			}
		}
	}
}

// checkResource checks the per-program OTLP Resource.
func checkResource(t *testing.T, res map[string]string, tp *targetProc, v variant) {
	t.Helper()
	host, _ := os.Hostname()
	want := map[string]string{
		"service.name":            tp.service,
		"service.instance.id":     host + ":" + strconv.Itoa(tp.pid),
		"process.pid":             strconv.Itoa(tp.pid),
		"process.executable.path": tp.exe,
		"host.name":               host,
		"process.runtime.version": v.goVersion,
	}
	for k, w := range want {
		if res[k] != w {
			t.Errorf("resource %s = %q, want %q (all: %v)", k, res[k], w, res)
		}
	}
}

// TestExporterOTLPHTTPLifecycle pushes over OTLP HTTP/protobuf with delta
// temporality and exponential histograms, and follows programs through
// their life: replicas of one service, one exiting (its series stay for the
// grace period in both outputs, and /metrics never goes backwards after it
// expires), the last exiting (everything goes), and a restart (fresh
// series).
func TestExporterOTLPHTTPLifecycle(t *testing.T) {
	requireBPF(t)
	v := variantByName(t, "go126-plain")
	recv := newOTLPReceiver()
	httpURL := recv.serveHTTP(t)
	const grace = 3 * time.Second
	a := startAgent(t, fmt.Sprintf("grace: %s\notlp:\n  protocol: http/protobuf\n  endpoint: %s\n  interval: 300ms\n  temporality: delta\n  histogram_aggregation: base2_exponential_bucket_histogram\n", grace, httpURL))
	svc := uniqueService("life", v)
	r1 := startTarget(t, v.exe, svc)
	r2 := startTarget(t, v.exe, svc)
	a.waitTargeted(t, r1.pid, 10*time.Second)
	a.waitTargeted(t, r2.pid, 10*time.Second)
	driveSlow(t, r1, 30, 1)
	driveSlow(t, r2, 20, 1)

	promCount := func() uint64 { return total(a.mustScrape(t).httpSeries(t, svc)) }
	// OTLP deltas of a process add up to its count.
	deltaSum := func(pid int) (n uint64, expOK bool) {
		expOK = true
		for _, p := range recv.points("http.server.request.duration") {
			if p.resource["process.pid"] != strconv.Itoa(pid) {
				continue
			}
			if p.exp == nil || p.metric.GetExponentialHistogram().GetAggregationTemporality().String() != "AGGREGATION_TEMPORALITY_DELTA" {
				expOK = false
				continue
			}
			var b uint64 = p.exp.GetZeroCount()
			for _, c := range p.exp.GetPositive().GetBucketCounts() {
				b += c
			}
			if b != p.count {
				expOK = false
			}
			n += p.count
		}
		return n, expOK
	}
	if !waitFor(5*time.Second, func() bool {
		n1, _ := deltaSum(r1.pid)
		n2, _ := deltaSum(r2.pid)
		return promCount() == 50 && n1 == 30 && n2 == 20
	}) {
		n1, ok1 := deltaSum(r1.pid)
		n2, ok2 := deltaSum(r2.pid)
		t.Fatalf("/metrics %d (want 50), OTLP deltas %d %v / %d %v (want 30, 20)", promCount(), n1, ok1, n2, ok2)
	}
	if _, ok := deltaSum(r1.pid); !ok {
		t.Error("exponential histogram points malformed or not delta")
	}

	// One replica exits: its series stay for the grace period...
	r1.kill()
	exited := time.Now()
	if !waitFor(5*time.Second, func() bool { return a.findTarget(r1.pid) == nil }) {
		t.Fatal("exited replica still in /targets")
	}
	seen := time.Now()
	recv.mu.Lock()
	before := len(recv.requests)
	recv.mu.Unlock()
	time.Sleep(700 * time.Millisecond)
	if n := promCount(); n != 50 {
		t.Errorf("/metrics during grace: %d, want 50", n)
	}
	if time.Since(exited) < grace && !resourceExported(recv, r1.pid, before) {
		t.Error("exited replica's resource not exported during its grace period")
	}
	// ...and after it, OTLP forgets the process while /metrics keeps its
	// counts in the service's totals: the counter never goes backwards.
	time.Sleep(grace - time.Since(seen) + 500*time.Millisecond)
	var after int
	if !waitFor(5*time.Second, func() bool {
		recv.mu.Lock()
		after = len(recv.requests)
		recv.mu.Unlock()
		time.Sleep(700 * time.Millisecond)
		return !resourceExported(recv, r1.pid, after)
	}) {
		t.Error("expired replica still exported over OTLP")
	}
	// Expired now (OTLP no longer sends it): /metrics still counts it.
	for i := 0; i < 3; i++ {
		if n := promCount(); n != 50 {
			t.Fatalf("/metrics after grace: %d, want 50 (a counter went backwards)", n)
		}
		time.Sleep(200 * time.Millisecond)
	}
	driveSlow(t, r2, 5, 1)
	if !waitFor(5*time.Second, func() bool { return promCount() == 55 }) {
		t.Errorf("/metrics after more traffic: %d, want 55", promCount())
	}

	// The last replica exits: after the grace period, nothing of the service.
	r2.kill()
	waitFor(5*time.Second, func() bool { return a.findTarget(r2.pid) == nil })
	// The process is marked exited once its probes are detached, a little
	// after /targets drops it: poll past the grace period.
	time.Sleep(grace)
	if !waitFor(5*time.Second, func() bool { return len(a.mustScrape(t).httpSeries(t, svc)) == 0 }) {
		t.Errorf("series of a service gone for longer than the grace period:\n%s", dump(a.mustScrape(t).httpSeries(t, svc)))
	}
	if !waitFor(5*time.Second, func() bool {
		recv.mu.Lock()
		after = len(recv.requests)
		recv.mu.Unlock()
		time.Sleep(700 * time.Millisecond)
		return !resourceExported(recv, r2.pid, after)
	}) {
		t.Error("expired process still exported over OTLP")
	}

	// A restarted program starts fresh series.
	r3 := startTarget(t, v.exe, svc)
	a.waitTargeted(t, r3.pid, 10*time.Second)
	driveSlow(t, r3, 7, 1)
	if !waitFor(5*time.Second, func() bool { n, _ := deltaSum(r3.pid); return promCount() == 7 && n == 7 }) {
		n, _ := deltaSum(r3.pid)
		t.Errorf("restart: /metrics %d, OTLP %d, want 7 and 7", promCount(), n)
	}
	if recv.via["http"] == 0 {
		t.Error("nothing came over HTTP")
	}
}

// resourceExported reports whether any OTLP request from index from on
// carried the process pid.
func resourceExported(r *otlpReceiver, pid, from int) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, req := range r.requests[from:] {
		for _, rm := range req.GetResourceMetrics() {
			if kvMap(rm.GetResource().GetAttributes())["process.pid"] == strconv.Itoa(pid) {
				return true
			}
		}
	}
	return false
}

// TestExporterCardinalityBound drives 10,000 distinct URL paths (each its own
// route: no ServeMux pattern matches them) at an agent whose series limit
// is 50: the series stay bounded, the rest go to the overflow series,
// blindspot_series_overflow_total counts them and the totals add up.
func TestExporterCardinalityBound(t *testing.T) {
	requireBPF(t)
	v := variantByName(t, "go126-plain")
	const limit, paths = 50, 10000
	a := startAgent(t, fmt.Sprintf("series_limit: %d\nhttp:\n  route_limit: 20000\n", limit))
	tp := startTarget(t, v.exe, uniqueService("card", v))
	a.waitTargeted(t, tp.pid, 10*time.Second)
	var wg sync.WaitGroup
	work := make(chan int)
	var failed sync.Once
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				if code, _, err := tp.do("GET", "/card/"+word(i)); err != nil || code != 404 {
					failed.Do(func() { t.Errorf("GET /card/%s: %d %v", word(i), code, err) })
				}
			}
		}()
	}
	for i := 0; i < paths; i++ {
		work <- i
	}
	close(work)
	wg.Wait()
	var ss map[httpKey]series
	if !waitFor(10*time.Second, func() bool { ss = a.mustScrape(t).httpSeries(t, tp.service); return total(ss) == paths }) {
		t.Fatalf("total %d, want %d", total(ss), paths)
	}
	s := a.mustScrape(t)
	var overflow uint64
	for _, se := range s.histograms["http_server_request_duration_seconds"] {
		if se.labels["service_name"] == tp.service && se.labels["otel_metric_overflow"] == "true" {
			overflow = se.count
		}
	}
	if len(ss) != limit+1 {
		t.Errorf("%d series, want %d and one overflow series", len(ss), limit)
	}
	folded, _ := s.value("blindspot_series_overflow_total", map[string]string{"metric": "http_server_request_duration_seconds"})
	if overflow != paths-limit || folded != paths-limit {
		t.Errorf("overflow series count %d, blindspot_series_overflow_total %v; want %d each", overflow, folded, paths-limit)
	}
	t.Logf("%d paths: %d series, overflow series %d requests", paths, len(ss), overflow)
}

// word spells i in letters, so that no path segment looks like an id.
func word(i int) string {
	b := []byte("w")
	for {
		b = append(b, byte('a'+i%26))
		i /= 26
		if i == 0 {
			return string(b)
		}
	}
}

// TestExporterStatusPageChromium loads the status page in a real headless
// Chromium: it lists a running target and logs no console error.
func TestExporterStatusPageChromium(t *testing.T) {
	requireBPF(t)
	bin := requireTool(t, "/usr/bin/chromium", "chromium")
	v := variantByName(t, "go126-plain")
	a := startAgent(t, "")
	tp := startTarget(t, v.exe, uniqueService("status", v))
	a.waitTargeted(t, tp.pid, 10*time.Second)
	text, problems := cdpPage(t, bin, "http://"+a.addr+"/")
	for _, p := range problems {
		t.Errorf("browser: %s", p)
	}
	for _, want := range []string{"Instrumented programs (1)", strconv.Itoa(tp.pid), tp.service, v.goVersion, "http_server", "/metrics", "/targets", "Lost"} {
		if !strings.Contains(text, want) {
			t.Errorf("page text lacks %q:\n%s", want, text)
		}
	}
	// --dump-dom, the plain way: the served DOM has the target's row and
	// the links.
	cmd := exec.CommandContext(env.ctx, bin, append(chromiumArgs(t.TempDir()), "--dump-dom", "http://"+a.addr+"/")...)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium --dump-dom: %v", err)
	}
	for _, want := range []string{fmt.Sprintf(`data-pid="%d"`, tp.pid), `href="metrics"`, `href="targets"`} {
		if !bytes.Contains(out, []byte(want)) {
			t.Errorf("DOM lacks %s", want)
		}
	}
}
