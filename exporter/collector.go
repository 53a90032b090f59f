package exporter

import (
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/blindspot-dev/blindspot/aggregator"
)

// targetLabels are the labels every series about an observed program carries.
var targetLabels = []string{"service_name"}

// programCollector renders the aggregator's series for Prometheus. Series of
// processes that share a service (replicas on one host) are summed: series
// carry no pid, which would churn on every restart.
type programCollector struct {
	agg   *aggregator.Aggregator
	descs map[*aggregator.Metric]*prometheus.Desc
}

func newProgramCollector(agg *aggregator.Aggregator) *programCollector {
	c := &programCollector{agg: agg, descs: map[*aggregator.Metric]*prometheus.Desc{}}
	for _, m := range agg.Metrics() {
		labels := append([]string{}, targetLabels...)
		if m.PerInstance {
			labels = append(labels, "service_instance_id")
		}
		labels = append(labels, m.Labels...)
		labels = append(labels, "otel_metric_overflow")
		c.descs[m] = prometheus.NewDesc(m.Name, m.Help, labels, nil)
	}
	return c
}

var hostname, _ = os.Hostname()

// instanceID is service.instance.id for a process: host:pid.
func instanceID(pid int) string {
	return hostname + ":" + strconv.Itoa(pid)
}

func (c *programCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
}

type mergedSeries struct {
	metric  *aggregator.Metric
	labels  []string
	count   uint64
	sum     float64
	buckets []uint64
}

func (c *programCollector) Collect(ch chan<- prometheus.Metric) {
	targets := map[aggregator.TargetID]aggregator.Target{}
	for _, t := range c.agg.Targets() {
		targets[t.ID] = t
	}
	merged := map[string]*mergedSeries{}
	var keys []string
	for _, p := range c.agg.Snapshot() {
		t, ok := targets[p.Target]
		if !ok {
			continue
		}
		labels := make([]string, 0, len(targetLabels)+len(p.Labels)+1)
		labels = append(labels, t.Service)
		if p.Metric.PerInstance {
			labels = append(labels, instanceID(t.PID))
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
		s.count += p.Count
		s.sum += p.Sum
		for i, b := range p.Buckets {
			s.buckets[i] += b
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		s := merged[k]
		desc := c.descs[s.metric]
		switch s.metric.Kind {
		case aggregator.Histogram:
			cum := make(map[float64]uint64, len(s.metric.Buckets))
			var run uint64
			for i, ub := range s.metric.Buckets {
				run += s.buckets[i]
				cum[ub] = run
			}
			m, err := prometheus.NewConstHistogram(desc, s.count, s.sum, cum, s.labels...)
			if err == nil {
				ch <- m
			}
		case aggregator.Counter:
			m, err := prometheus.NewConstMetric(desc, prometheus.CounterValue, float64(s.count), s.labels...)
			if err == nil {
				ch <- m
			}
		case aggregator.Gauge:
			m, err := prometheus.NewConstMetric(desc, prometheus.GaugeValue, s.sum, s.labels...)
			if err == nil {
				ch <- m
			}
		}
	}
}
