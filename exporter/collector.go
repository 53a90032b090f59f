package exporter

import (
	"math"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/proto"

	"github.com/blindspot-dev/blindspot/aggregator"
)

// targetLabels are the labels every series about an observed program carries.
var targetLabels = []string{"service_name", "service_namespace"}

// overflowLabel marks a metric's overflow series, as the OpenTelemetry SDK
// does.
const overflowLabel = "otel_metric_overflow"

// programCollector renders the aggregator's series for Prometheus.
//
// Series carry no pid, which would churn on every restart: the series of
// the processes that share a service (replicas on one host, or a program and
// its restarted self) are summed. For counters and histograms the sum must
// never go backwards while the service runs, so a process that expires
// leaves its final values behind in the aggregator's retired totals
// (Aggregator.Retired), which are added here until the service's last
// process expires too. Gauges describe the present: an exited process's
// gauges count only while no process of its service runs. A scrape changes
// nothing: the agent expires exited processes on its own clock
// (Aggregator.Expire).
type programCollector struct {
	agg *aggregator.Aggregator
	// extra are the further target labels every series carries (the
	// Kubernetes labels, in Kubernetes), valued from Target.Labels.
	extra []string
	mu    sync.Mutex // guards descs: metrics may be added after start
	descs map[*aggregator.Metric]*prometheus.Desc
}

func newProgramCollector(agg *aggregator.Aggregator, extra []string) *programCollector {
	c := &programCollector{agg: agg, extra: extra, descs: map[*aggregator.Metric]*prometheus.Desc{}}
	for _, m := range agg.Metrics() {
		c.desc(m)
	}
	return c
}

// desc returns the Desc of a metric, making it on first sight (business
// metrics are added and removed when the configuration is reloaded).
func (c *programCollector) desc(m *aggregator.Metric) *prometheus.Desc {
	c.mu.Lock()
	defer c.mu.Unlock()
	if d, ok := c.descs[m]; ok {
		return d
	}
	{
		labels := append(append([]string{}, targetLabels...), c.extra...)
		if m.PerInstance {
			labels = append(labels, "service_instance_id")
		}
		labels = append(labels, m.Labels...)
		labels = append(labels, overflowLabel)
		var opts []prometheus.DescOpt
		if u := promUnit(m.Name); u != "" {
			opts = append(opts, prometheus.WithUnit(u))
		}
		c.descs[m] = prometheus.V2.NewDesc(m.Name, m.Help, prometheus.UnconstrainedLabels(labels), nil, opts...)
	}
	return c.descs[m]
}

// promUnit is the OpenMetrics unit of a metric, which its name must end
// with (before _total).
func promUnit(name string) string {
	name = strings.TrimSuffix(name, "_total")
	for _, u := range []string{"seconds", "bytes", "ratio", "percent"} {
		if strings.HasSuffix(name, "_"+u) {
			return u
		}
	}
	return ""
}

var hostname, _ = os.Hostname()

// instanceID is service.instance.id for a process: host:pid.
func instanceID(pid int) string {
	return hostname + ":" + strconv.Itoa(pid)
}

// Describe sends nothing: the collector is unchecked, because metrics may
// be added after it is registered, and a checked collector may only collect
// the descriptors it described at registration. Gather still rejects
// inconsistent output (one name with two label sets or two help texts).
func (c *programCollector) Describe(ch chan<- *prometheus.Desc) {}

type mergedSeries struct {
	metric  *aggregator.Metric
	labels  []string
	count   uint64
	sum     float64
	buckets []uint64
	exp     *aggregator.ExpBuckets
}

func (s *mergedSeries) add(p *aggregator.Point) {
	s.count += p.Count
	s.sum += p.Sum
	for i, b := range p.Buckets {
		s.buckets[i] += b
	}
	if p.Exp != nil {
		if s.exp == nil {
			s.exp = p.Exp
		} else {
			s.exp = aggregator.MergeExp(s.exp, p.Exp)
		}
	}
}

func (c *programCollector) Collect(ch chan<- prometheus.Metric) {
	for _, s := range c.merge() {
		if m := c.render(s); m != nil {
			ch <- m
		}
	}
}

// merge sums the series of the processes of each service, and their
// retired totals.
func (c *programCollector) merge() []*mergedSeries {
	type target struct {
		aggregator.Target
		group string
	}
	targets := map[aggregator.TargetID]target{}
	running := map[string]bool{} // groups (services in a place) with a running process
	for _, t := range c.agg.Targets() {
		g := t.Group()
		targets[t.ID] = target{t, g}
		if t.Exited.IsZero() {
			running[g] = true
		}
	}
	merged := map[string]*mergedSeries{}
	var keys []string
	get := func(p *aggregator.Point, svc, ns string, extra map[string]string, instance string) *mergedSeries {
		labels := make([]string, 0, len(targetLabels)+len(c.extra)+len(p.Labels)+2)
		labels = append(labels, svc, ns)
		for _, l := range c.extra {
			labels = append(labels, extra[l])
		}
		if p.Metric.PerInstance {
			labels = append(labels, instance)
		}
		labels = append(labels, p.Labels...)
		if p.Overflow {
			labels = append(labels, "true")
		} else {
			labels = append(labels, "")
		}
		key := p.Metric.Name + "\xff" + strings.Join(labels, "\xff")
		s := merged[key]
		if s == nil {
			s = &mergedSeries{metric: p.Metric, labels: labels}
			if p.Buckets != nil {
				s.buckets = make([]uint64, len(p.Buckets))
			}
			merged[key] = s
			keys = append(keys, key)
		}
		return s
	}
	for _, p := range c.agg.Snapshot() {
		t, ok := targets[p.Target]
		if !ok {
			continue
		}
		if p.Metric.Kind == aggregator.Gauge && !p.Metric.PerInstance && !t.Exited.IsZero() && running[t.group] {
			continue
		}
		get(&p, t.Service, t.Namespace, t.Labels, instanceID(t.PID)).add(&p)
	}
	for _, p := range c.agg.Retired() {
		get(&p, p.Service, p.Namespace, p.TargetLabels, "").add(&p)
	}
	sort.Strings(keys)
	out := make([]*mergedSeries, len(keys))
	for i, k := range keys {
		out[i] = merged[k]
	}
	return out
}

func (c *programCollector) render(s *mergedSeries) prometheus.Metric {
	desc := c.desc(s.metric)
	switch s.metric.Kind {
	case aggregator.Histogram:
		return newHistogram(desc, s)
	case aggregator.Counter:
		m, err := prometheus.NewConstMetric(desc, prometheus.CounterValue, s.sum, s.labels...)
		if err == nil {
			return m
		}
	case aggregator.Gauge:
		m, err := prometheus.NewConstMetric(desc, prometheus.GaugeValue, s.sum, s.labels...)
		if err == nil {
			return m
		}
	}
	return nil
}

// histogram is a Prometheus histogram with both classic buckets and native
// (exponential) ones: the text formats show the classic buckets, and a
// scraper that asks for protobuf gets both.
type histogram struct {
	desc   *prometheus.Desc
	labels []*dto.LabelPair
	h      dto.Histogram
}

func newHistogram(desc *prometheus.Desc, s *mergedSeries) *histogram {
	m := &histogram{desc: desc, labels: prometheus.MakeLabelPairs(desc, s.labels)}
	h := &m.h
	h.SampleCount = proto.Uint64(s.count)
	h.SampleSum = proto.Float64(s.sum)
	var run uint64
	for i, ub := range s.metric.Buckets {
		run += s.buckets[i]
		h.Bucket = append(h.Bucket, &dto.Bucket{UpperBound: proto.Float64(ub), CumulativeCount: proto.Uint64(run)})
	}
	if e := s.exp; e != nil {
		if e.Scale < -4 { // the coarsest schema Prometheus takes
			e = e.Clone()
			e.Downscale(e.Scale + 4)
		}
		h.Schema = proto.Int32(e.Scale)
		h.ZeroThreshold = proto.Float64(0)
		h.ZeroCount = proto.Uint64(e.Zero)
		h.PositiveSpan, h.PositiveDelta = nativeSpans(e)
		if len(h.PositiveSpan) == 0 {
			// An empty span tells a scraper this is a native histogram.
			h.PositiveSpan = []*dto.BucketSpan{{Offset: proto.Int32(0), Length: proto.Uint32(0)}}
		}
	}
	return m
}

// nativeSpans encodes exponential buckets as Prometheus spans and deltas.
// Prometheus' index of a bucket is OpenTelemetry's plus one.
func nativeSpans(e *aggregator.ExpBuckets) ([]*dto.BucketSpan, []int64) {
	var spans []*dto.BucketSpan
	var deltas []int64
	var prev int64
	next := int32(math.MinInt32) // index right after the last span
	for j, c := range e.Counts {
		if c == 0 {
			continue
		}
		idx := e.Offset + int32(j) + 1
		switch {
		case len(spans) == 0:
			spans = append(spans, &dto.BucketSpan{Offset: proto.Int32(idx), Length: proto.Uint32(0)})
		case idx-next > 2:
			spans = append(spans, &dto.BucketSpan{Offset: proto.Int32(idx - next), Length: proto.Uint32(0)})
		default:
			// Bridge a short gap with empty buckets: cheaper than a span.
			for ; next < idx; next++ {
				deltas = append(deltas, -prev)
				prev = 0
				*spans[len(spans)-1].Length++
			}
		}
		deltas = append(deltas, int64(c)-prev)
		prev = int64(c)
		*spans[len(spans)-1].Length++
		next = idx + 1
	}
	return spans, deltas
}

func (m *histogram) Desc() *prometheus.Desc { return m.desc }

func (m *histogram) Write(out *dto.Metric) error {
	out.Label = m.labels
	out.Histogram = &m.h
	return nil
}
