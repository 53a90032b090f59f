package exporter

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/blindspot-dev/blindspot/aggregator"
)

// selfCollector exports the agent's own health: what it instruments, what
// it failed to, and what it dropped.
type selfCollector struct {
	state State
	agg   *aggregator.Aggregator

	targets, targetInfo, probeErrors, events, lost, invalid, overflow, unattributed *prometheus.Desc
}

func newSelfCollector(state State, agg *aggregator.Aggregator) *selfCollector {
	return &selfCollector{
		state:        state,
		agg:          agg,
		targets:      prometheus.NewDesc("blindspot_targets", "Programs instrumented now.", nil, nil),
		targetInfo:   prometheus.NewDesc("blindspot_target_info", "One series per instrumented program.", []string{"service_name", "pid", "exe", "go_version"}, nil),
		probeErrors:  prometheus.NewDesc("blindspot_probe_errors_total", "Programs or probes that could not be instrumented, by probe family and reason.", []string{"probe", "reason"}, nil),
		events:       prometheus.NewDesc("blindspot_events_total", "Events read from the ring buffers, by probe family.", []string{"probe"}, nil),
		lost:         prometheus.NewDesc("blindspot_events_lost_total", "Events dropped because a ring buffer was full or unreadable, or a call not measured because its family's map of calls in flight was full, by probe family.", []string{"probe"}, nil),
		invalid:      prometheus.NewDesc("blindspot_events_invalid_total", "Events not exported because a value read from the program was implausible, by probe family and reason (status, method, utf8, path, port, duration, host, proto).", []string{"probe", "reason"}, nil),
		overflow:     prometheus.NewDesc("blindspot_series_overflow_total", "Label sets folded into a metric's overflow series because it reached its series limit.", []string{"metric"}, nil),
		unattributed: prometheus.NewDesc("blindspot_events_unattributed_total", "Events that named a process no longer instrumented (or malformed events).", []string{"reason"}, nil),
	}
}

func (c *selfCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.targets, c.targetInfo, c.probeErrors, c.events, c.lost, c.invalid, c.overflow, c.unattributed} {
		ch <- d
	}
}

func (c *selfCollector) Collect(ch chan<- prometheus.Metric) {
	ts := c.state.Targets()
	ch <- prometheus.MustNewConstMetric(c.targets, prometheus.GaugeValue, float64(len(ts)))
	for _, t := range ts {
		ch <- prometheus.MustNewConstMetric(c.targetInfo, prometheus.GaugeValue, 1, t.ServiceName, strconv.Itoa(t.PID), t.Exe, t.GoVersion)
	}
	for k, n := range c.state.ProbeErrors() {
		ch <- prometheus.MustNewConstMetric(c.probeErrors, prometheus.CounterValue, float64(n), k.Probe, k.Reason)
	}
	st := c.state.ProbeStats()
	for fam, n := range st.Events {
		ch <- prometheus.MustNewConstMetric(c.events, prometheus.CounterValue, float64(n), fam)
	}
	for fam, n := range st.Lost {
		ch <- prometheus.MustNewConstMetric(c.lost, prometheus.CounterValue, float64(n), fam)
	}
	for fam, by := range st.Invalid {
		for reason, n := range by {
			ch <- prometheus.MustNewConstMetric(c.invalid, prometheus.CounterValue, float64(n), fam, reason)
		}
	}
	ch <- prometheus.MustNewConstMetric(c.unattributed, prometheus.CounterValue, float64(st.Unattributed), "unknown_process")
	ch <- prometheus.MustNewConstMetric(c.unattributed, prometheus.CounterValue, float64(st.Malformed), "malformed")
	for name, n := range c.agg.Overflows() {
		ch <- prometheus.MustNewConstMetric(c.overflow, prometheus.CounterValue, float64(n), name)
	}
}
