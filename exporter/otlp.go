package exporter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/resource"

	"github.com/blindspot-dev/blindspot/aggregator"
)

// OTLP protocols.
const (
	ProtocolGRPC         = "grpc"
	ProtocolHTTPProtobuf = "http/protobuf"
)

// Temporality preferences (OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE).
const (
	TemporalityCumulative = "cumulative"
	TemporalityDelta      = "delta"
	// TemporalityLowMemory sends histograms as deltas and counters
	// cumulative: blindspot's counters are mostly totals read from the
	// programs, which the specification treats as observable counters.
	TemporalityLowMemory = "lowmemory"
)

// Histogram aggregations (OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION).
const (
	HistogramExplicit    = "explicit_bucket_histogram"
	HistogramExponential = "base2_exponential_bucket_histogram"
)

// OTLPOptions configure the OTLP push. Endpoint, headers, TLS files and
// compression not set here are read by the OpenTelemetry exporters from the
// standard OTEL_EXPORTER_OTLP_* variables.
type OTLPOptions struct {
	// Protocol is ProtocolGRPC or ProtocolHTTPProtobuf (default).
	Protocol string
	// Endpoint is the collector's base URL, as in OTEL_EXPORTER_OTLP_ENDPOINT
	// (e.g. http://collector:4318; /v1/metrics is added for HTTP). Empty
	// takes the exporters' own defaults and variables.
	Endpoint string
	// Headers are sent with every export.
	Headers map[string]string
	// Interval between exports (default 60s).
	Interval time.Duration
	// Timeout of one export (default 30s).
	Timeout time.Duration
	// Temporality is TemporalityCumulative (default), TemporalityDelta or
	// TemporalityLowMemory.
	Temporality string
	// Histogram is HistogramExplicit (default) or HistogramExponential.
	Histogram string
	// ResourceAttributes are the agent's own OTEL_RESOURCE_ATTRIBUTES (a
	// cluster name, a deployment environment), added to every program's
	// resource below what the program and blindspot say of it. Keys of the
	// service.* namespace are left out: they name the agent, not the
	// programs it observes.
	ResourceAttributes map[string]string
	Logger             *slog.Logger
}

// OTLPFromEnv reads the standard OpenTelemetry variables through getenv
// (os.Getenv) and reports whether they ask for an OTLP metrics export:
// OTEL_METRICS_EXPORTER naming otlp, or an OTLP endpoint set; "none"
// turns it off.
func OTLPFromEnv(getenv func(string) string) (opts OTLPOptions, enabled bool, err error) {
	exporters := getenv("OTEL_METRICS_EXPORTER")
	for _, e := range strings.Split(exporters, ",") {
		if strings.TrimSpace(e) == "otlp" {
			enabled = true
		}
	}
	if getenv("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT") != "" || getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" {
		enabled = true
	}
	if strings.TrimSpace(exporters) == "none" || strings.EqualFold(getenv("OTEL_SDK_DISABLED"), "true") {
		enabled = false
	}
	first := func(names ...string) (string, string) {
		for _, n := range names {
			if v := strings.TrimSpace(getenv(n)); v != "" {
				return n, v
			}
		}
		return "", ""
	}
	_, opts.Protocol = first("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")
	for _, d := range []struct {
		name string
		to   *time.Duration
	}{{"OTEL_METRIC_EXPORT_INTERVAL", &opts.Interval}, {"OTEL_METRIC_EXPORT_TIMEOUT", &opts.Timeout}} {
		if v := getenv(d.name); v != "" {
			ms, err := strconv.Atoi(v)
			if err != nil || ms <= 0 {
				return opts, enabled, fmt.Errorf("%s=%q: want a positive number of milliseconds", d.name, v)
			}
			*d.to = time.Duration(ms) * time.Millisecond
		}
	}
	opts.Temporality = strings.ToLower(getenv("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE"))
	opts.Histogram = strings.ToLower(getenv("OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION"))
	for k, v := range ParseResourceAttributes(getenv("OTEL_RESOURCE_ATTRIBUTES")) {
		if strings.HasPrefix(k, "service.") {
			continue
		}
		if opts.ResourceAttributes == nil {
			opts.ResourceAttributes = map[string]string{}
		}
		opts.ResourceAttributes[k] = v
	}
	return opts, enabled, opts.Check()
}

// Merge returns o with the fields set in over replacing its own.
func (o OTLPOptions) Merge(over OTLPOptions) OTLPOptions {
	if over.Protocol != "" {
		o.Protocol = over.Protocol
	}
	if over.Endpoint != "" {
		o.Endpoint = over.Endpoint
	}
	if len(over.Headers) > 0 {
		o.Headers = over.Headers
	}
	if over.Interval != 0 {
		o.Interval = over.Interval
	}
	if over.Timeout != 0 {
		o.Timeout = over.Timeout
	}
	if over.Temporality != "" {
		o.Temporality = over.Temporality
	}
	if over.Histogram != "" {
		o.Histogram = over.Histogram
	}
	if len(over.ResourceAttributes) > 0 {
		o.ResourceAttributes = over.ResourceAttributes
	}
	return o
}

// Check reports a setting blindspot does not know.
func (o OTLPOptions) Check() error {
	switch o.Protocol {
	case "", ProtocolGRPC, ProtocolHTTPProtobuf:
	case "http/json":
		return errors.New("OTLP protocol http/json is not supported: use grpc or http/protobuf")
	default:
		return fmt.Errorf("OTLP protocol %q: use grpc or http/protobuf", o.Protocol)
	}
	switch o.Temporality {
	case "", TemporalityCumulative, TemporalityDelta, TemporalityLowMemory:
	default:
		return fmt.Errorf("OTLP temporality %q: use cumulative, delta or lowmemory", o.Temporality)
	}
	switch o.Histogram {
	case "", HistogramExplicit, HistogramExponential:
	default:
		return fmt.Errorf("OTLP histogram aggregation %q: use %s or %s", o.Histogram, HistogramExplicit, HistogramExponential)
	}
	if o.Endpoint != "" {
		u, err := url.Parse(o.Endpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("OTLP endpoint %q: want a URL such as http://collector:4318", o.Endpoint)
		}
	}
	if o.Interval < 0 || o.Timeout < 0 {
		return errors.New("OTLP interval and timeout must not be negative")
	}
	return nil
}

// metricExporter is what both OTLP exporters offer.
type metricExporter interface {
	Export(context.Context, *metricdata.ResourceMetrics) error
	Shutdown(context.Context) error
}

// OTLP pushes the aggregator's series to an OpenTelemetry collector, each
// observed program as its own Resource. It reads the same aggregation as
// /metrics, but never sums processes: the Resource says which one it is.
// An export changes nothing in the aggregator: the agent expires exited
// processes on its own clock (Aggregator.Expire).
type OTLP struct {
	agg  *aggregator.Aggregator
	exp  metricExporter
	opts OTLPOptions
	now  func() time.Time

	mu   sync.Mutex // one export at a time; guards prev
	prev map[prevKey]*prevPoint

	exports, failures atomic.Uint64
}

type prevKey struct {
	target aggregator.TargetID
	metric *aggregator.Metric
	attrs  attribute.Distinct
}

// prevPoint is a series as last exported, for delta temporality.
type prevPoint struct {
	count   uint64
	sum     float64
	buckets []uint64
	exp     *aggregator.ExpBuckets
	at      time.Time
}

// NewOTLP builds the OTLP exporter; nothing is sent before Run.
func NewOTLP(ctx context.Context, agg *aggregator.Aggregator, opts OTLPOptions) (*OTLP, error) {
	if err := opts.Check(); err != nil {
		return nil, err
	}
	if opts.Protocol == "" {
		opts.Protocol = ProtocolHTTPProtobuf
	}
	if opts.Interval == 0 {
		opts.Interval = time.Minute
	}
	if opts.Timeout == 0 {
		opts.Timeout = 30 * time.Second
	}
	if opts.Temporality == "" {
		opts.Temporality = TemporalityCumulative
	}
	if opts.Histogram == "" {
		opts.Histogram = HistogramExplicit
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	var exp metricExporter
	var err error
	switch opts.Protocol {
	case ProtocolGRPC:
		o := []otlpmetricgrpc.Option{otlpmetricgrpc.WithTimeout(opts.Timeout)}
		if opts.Endpoint != "" {
			o = append(o, otlpmetricgrpc.WithEndpointURL(opts.Endpoint))
		}
		if len(opts.Headers) > 0 {
			o = append(o, otlpmetricgrpc.WithHeaders(opts.Headers))
		}
		exp, err = otlpmetricgrpc.New(ctx, o...)
	default:
		o := []otlpmetrichttp.Option{otlpmetrichttp.WithTimeout(opts.Timeout)}
		if opts.Endpoint != "" {
			u, _ := url.Parse(opts.Endpoint)
			u.Path = strings.TrimSuffix(u.Path, "/") + "/v1/metrics"
			o = append(o, otlpmetrichttp.WithEndpointURL(u.String()))
		}
		if len(opts.Headers) > 0 {
			o = append(o, otlpmetrichttp.WithHeaders(opts.Headers))
		}
		exp, err = otlpmetrichttp.New(ctx, o...)
	}
	if err != nil {
		return nil, fmt.Errorf("otlp exporter: %w", err)
	}
	return newOTLPWith(agg, exp, opts), nil
}

func newOTLPWith(agg *aggregator.Aggregator, exp metricExporter, opts OTLPOptions) *OTLP {
	return &OTLP{agg: agg, exp: exp, opts: opts, now: time.Now, prev: map[prevKey]*prevPoint{}}
}

// Run exports every interval until ctx ends, then once more (so that a
// stopping agent sends what it counted last) and shuts the exporter down.
func (o *OTLP) Run(ctx context.Context) {
	tick := time.NewTicker(o.opts.Interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			final, cancel := context.WithTimeout(context.Background(), o.opts.Timeout)
			o.Export(final)
			o.exp.Shutdown(final)
			cancel()
			return
		case <-tick.C:
			o.Export(ctx)
		}
	}
}

// Export sends one ResourceMetrics per observed program. A program whose
// export failed is sent again whole next time (its deltas are kept).
func (o *OTLP) Export(ctx context.Context) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	var errs []error
	batches, commit := o.collect()
	for i := range batches {
		c, cancel := context.WithTimeout(ctx, o.opts.Timeout)
		err := o.exp.Export(c, &batches[i])
		cancel()
		if err != nil {
			o.failures.Add(1)
			errs = append(errs, err)
			continue
		}
		o.exports.Add(1)
		commit[i]()
	}
	if err := errors.Join(errs...); err != nil {
		o.opts.Logger.Warn("OTLP export failed", "failed", len(errs), "programs", len(batches), "err", errs[0])
		return err
	}
	return nil
}

// Stats returns how many per-program exports succeeded and failed.
func (o *OTLP) Stats() (exports, failures uint64) {
	return o.exports.Load(), o.failures.Load()
}

// SchemaURL is the version of the OpenTelemetry semantic conventions
// whose names, attributes and instruments blindspot follows (see
// docs/metrics.md), as every resource it sends declares it.
const SchemaURL = "https://opentelemetry.io/schemas/1.44.0"

// scope is the instrumentation scope of every metric: blindspot, at the
// agent's version.
func scope() instrumentation.Scope {
	return instrumentation.Scope{Name: "github.com/blindspot-dev/blindspot", Version: Version, SchemaURL: SchemaURL}
}

// ParseResourceAttributes reads an OTEL_RESOURCE_ATTRIBUTES value as the
// OpenTelemetry SDKs do: comma-separated key=value pairs, spaces around
// them trimmed, values percent-decoded (kept as written where that fails).
// A pair without "=" or with an empty key is skipped.
func ParseResourceAttributes(s string) map[string]string {
	out := map[string]string{}
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(kv, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			continue
		}
		v = strings.TrimSpace(v)
		if d, err := url.PathUnescape(v); err == nil {
			v = d
		}
		out[k] = v
	}
	return out
}

// collect builds one ResourceMetrics per program and, for each, a function
// that records its points as exported (for deltas). Called with mu held.
func (o *OTLP) collect() ([]metricdata.ResourceMetrics, []func()) {
	now := o.now()
	targets := o.agg.Targets()
	byTarget := map[aggregator.TargetID][]aggregator.Point{}
	for _, p := range o.agg.Snapshot() {
		byTarget[p.Target] = append(byTarget[p.Target], p)
	}
	live := map[aggregator.TargetID]bool{}
	var out []metricdata.ResourceMetrics
	var commits []func()
	for _, t := range targets {
		live[t.ID] = true
		points := byTarget[t.ID]
		if len(points) == 0 {
			continue
		}
		rm, commit := o.resourceMetrics(t, points, now)
		out = append(out, rm)
		commits = append(commits, commit)
	}
	for k := range o.prev {
		if !live[k.target] {
			delete(o.prev, k)
		}
	}
	return out, commits
}

// Resource returns the OpenTelemetry resource of an observed process:
// base (the agent's own OTEL_RESOURCE_ATTRIBUTES), overridden by what is
// known of the process (t.Resource: its own OTEL_RESOURCE_ATTRIBUTES,
// Kubernetes), overridden by what blindspot itself established (its
// service, process and host), with the schema URL of the conventions
// followed.
func Resource(t aggregator.Target, base map[string]string) *resource.Resource {
	kv := make([]attribute.KeyValue, 0, len(base)+len(t.Resource)+9)
	// attribute.NewSet keeps the last value of a key: lowest precedence first.
	for _, k := range sortedKeys(base) {
		kv = append(kv, attribute.String(k, base[k]))
	}
	for _, k := range sortedKeys(t.Resource) {
		kv = append(kv, attribute.String(k, t.Resource[k]))
	}
	kv = append(kv,
		attribute.String("service.name", t.Service),
		attribute.String("service.instance.id", instanceID(t.PID)),
		attribute.Int("process.pid", t.PID),
		attribute.String("process.executable.path", t.Exe),
		attribute.String("process.executable.name", filepath.Base(t.Exe)),
		attribute.String("process.runtime.name", "go"),
		attribute.String("host.name", hostname),
	)
	if t.GoVersion != "" {
		kv = append(kv, attribute.String("process.runtime.version", t.GoVersion))
	}
	if t.Namespace != "" {
		kv = append(kv, attribute.String("service.namespace", t.Namespace))
	}
	return resource.NewWithAttributes(SchemaURL, kv...)
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func (o *OTLP) resourceMetrics(t aggregator.Target, points []aggregator.Point, now time.Time) (metricdata.ResourceMetrics, func()) {
	byMetric := map[*aggregator.Metric][]aggregator.Point{}
	for _, p := range points {
		byMetric[p.Metric] = append(byMetric[p.Metric], p)
	}
	next := map[prevKey]*prevPoint{}
	sm := metricdata.ScopeMetrics{Scope: scope()}
	for _, m := range o.agg.Metrics() { // registration order: stable output
		ps := byMetric[m]
		if len(ps) == 0 {
			continue
		}
		name := m.OTelName
		if name == "" {
			name = m.Name
		}
		out := metricdata.Metrics{Name: name, Description: m.Help, Unit: m.Unit}
		delta := o.opts.Temporality == TemporalityDelta ||
			(o.opts.Temporality == TemporalityLowMemory && m.Kind == aggregator.Histogram)
		switch m.Kind {
		case aggregator.Gauge:
			if m.UpDown {
				out.Data = upDownData(t, ps, now)
			} else {
				out.Data = gaugeData(ps, now)
			}
		case aggregator.Counter:
			if m.Float {
				out.Data = counterData(o, t, m, ps, now, delta, next, func(_ uint64, sum float64) float64 { return sum })
			} else {
				out.Data = counterData(o, t, m, ps, now, delta, next, func(count uint64, _ float64) int64 { return int64(count) })
			}
		case aggregator.Histogram:
			out.Data = o.histogramData(t, m, ps, now, delta, next)
		}
		sm.Metrics = append(sm.Metrics, out)
	}
	rm := metricdata.ResourceMetrics{Resource: Resource(t, o.opts.ResourceAttributes), ScopeMetrics: []metricdata.ScopeMetrics{sm}}
	return rm, func() {
		for k, v := range next {
			o.prev[k] = v
		}
	}
}

func temporalityOf(delta bool) metricdata.Temporality {
	if delta {
		return metricdata.DeltaTemporality
	}
	return metricdata.CumulativeTemporality
}

func gaugeData(ps []aggregator.Point, now time.Time) metricdata.Gauge[float64] {
	g := metricdata.Gauge[float64]{}
	for _, p := range ps {
		g.DataPoints = append(g.DataPoints, metricdata.DataPoint[float64]{Attributes: otelAttributes(&p), Time: now, Value: p.Sum})
	}
	return g
}

// upDownData converts the points of an UpDownCounter: a non-monotonic
// Sum, cumulative whatever the temporality preference (as the
// specification's delta and low-memory preferences keep UpDownCounters),
// from the process's start.
func upDownData(t aggregator.Target, ps []aggregator.Point, now time.Time) metricdata.Sum[float64] {
	s := metricdata.Sum[float64]{Temporality: metricdata.CumulativeTemporality, IsMonotonic: false}
	for _, p := range ps {
		s.DataPoints = append(s.DataPoints, metricdata.DataPoint[float64]{Attributes: otelAttributes(&p), StartTime: t.Start, Time: now, Value: p.Sum})
	}
	return s
}

// counterData converts a counter's points; with delta temporality each
// point is the change since the previous export of its series. next
// collects the values this export leaves as the previous ones. value
// reads a point's total: its count (int64), or its sum for a counter with
// a fraction (Metric.Float, float64).
func counterData[N int64 | float64](o *OTLP, t aggregator.Target, m *aggregator.Metric, ps []aggregator.Point, now time.Time, delta bool, next map[prevKey]*prevPoint, value func(count uint64, sum float64) N) metricdata.Sum[N] {
	s := metricdata.Sum[N]{Temporality: temporalityOf(delta), IsMonotonic: true}
	for _, p := range ps {
		attrs := otelAttributes(&p)
		k := prevKey{t.ID, m, attrs.Equivalent()}
		start, v := t.Start, value(p.Count, p.Sum)
		if prev := o.prev[k]; delta && prev != nil {
			start, v = prev.at, v-value(prev.count, prev.sum)
		}
		next[k] = &prevPoint{count: p.Count, sum: p.Sum, at: now}
		s.DataPoints = append(s.DataPoints, metricdata.DataPoint[N]{Attributes: attrs, StartTime: start, Time: now, Value: v})
	}
	return s
}

// histogramData converts a histogram's points, with explicit or
// exponential buckets as configured; delta as for counterData.
func (o *OTLP) histogramData(t aggregator.Target, m *aggregator.Metric, ps []aggregator.Point, now time.Time, delta bool, next map[prevKey]*prevPoint) metricdata.Aggregation {
	exponential := o.opts.Histogram == HistogramExponential
	var hist metricdata.Histogram[float64]
	var ehist metricdata.ExponentialHistogram[float64]
	hist.Temporality, ehist.Temporality = temporalityOf(delta), temporalityOf(delta)
	for _, p := range ps {
		attrs := otelAttributes(&p)
		k := prevKey{t.ID, m, attrs.Equivalent()}
		cur := &prevPoint{count: p.Count, sum: p.Sum, buckets: p.Buckets, exp: p.Exp, at: now}
		next[k] = cur
		d := *cur
		d.at = t.Start
		if prev := o.prev[k]; delta && prev != nil {
			d = subtract(cur, prev)
		}
		if exponential {
			e := d.exp
			if e == nil {
				e = &aggregator.ExpBuckets{}
			}
			ehist.DataPoints = append(ehist.DataPoints, metricdata.ExponentialHistogramDataPoint[float64]{
				Attributes: attrs, StartTime: d.at, Time: now, Count: d.count, Sum: d.sum,
				Scale: e.Scale, ZeroCount: e.Zero,
				PositiveBucket: metricdata.ExponentialBucket{Offset: e.Offset, Counts: e.Counts},
			})
		} else {
			hist.DataPoints = append(hist.DataPoints, metricdata.HistogramDataPoint[float64]{
				Attributes: attrs, StartTime: d.at, Time: now, Count: d.count, Sum: d.sum,
				Bounds: m.Buckets, BucketCounts: d.buckets,
			})
		}
	}
	if exponential {
		return ehist
	}
	return hist
}

// subtract returns cur - prev of a cumulative histogram series, starting
// at prev's time.
func subtract(cur, prev *prevPoint) prevPoint {
	d := prevPoint{count: cur.count - prev.count, sum: cur.sum - prev.sum, at: prev.at}
	d.buckets = make([]uint64, len(cur.buckets))
	for i := range cur.buckets {
		d.buckets[i] = cur.buckets[i]
		if i < len(prev.buckets) {
			d.buckets[i] -= prev.buckets[i]
		}
	}
	if cur.exp != nil {
		c := cur.exp.Clone()
		if p := prev.exp; p != nil {
			p = p.Clone()
			// A series only ever gets coarser; align the two anyway.
			if p.Scale > c.Scale {
				p.Downscale(p.Scale - c.Scale)
			} else if c.Scale > p.Scale {
				c.Downscale(c.Scale - p.Scale)
			}
			c.Zero -= p.Zero
			for j, n := range p.Counts {
				if i := p.Offset + int32(j) - c.Offset; i >= 0 && int(i) < len(c.Counts) {
					c.Counts[i] -= n
				}
			}
		}
		d.exp = c
	}
	return d
}

// otelAttributes maps a point's labels to OpenTelemetry attributes; empty
// values are absent labels.
func otelAttributes(p *aggregator.Point) attribute.Set {
	if p.Overflow {
		return attribute.NewSet(attribute.Bool("otel.metric.overflow", true))
	}
	kv := make([]attribute.KeyValue, 0, len(p.Labels))
	for i, v := range p.Labels {
		if v == "" {
			continue
		}
		name := OTelAttributeName(p.Metric.Labels[i])
		if name == "http.response.status_code" || name == "server.port" {
			if n, err := strconv.Atoi(v); err == nil {
				kv = append(kv, attribute.Int(name, n))
				continue
			}
		}
		kv = append(kv, attribute.String(name, v))
	}
	return attribute.NewSet(kv...)
}

// otelNames are the semantic-convention names of the labels whose name is
// not simply the Prometheus name with dots for underscores.
var otelNames = map[string]string{
	"http_response_status_code":             "http.response.status_code",
	"blindspot_go_goroutine_start_function": "blindspot.go.goroutine.start_function",
	"service_instance_id":                   "service.instance.id",
}

// OTelAttributeName maps a Prometheus label name back to its OpenTelemetry
// attribute name: http_request_method → http.request.method.
func OTelAttributeName(label string) string {
	if n, ok := otelNames[label]; ok {
		return n
	}
	return strings.ReplaceAll(label, "_", ".")
}
