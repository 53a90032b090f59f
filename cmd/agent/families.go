package main

import (
	"github.com/blindspot-dev/blindspot/aggregator"
	"github.com/blindspot-dev/blindspot/probes"
	"github.com/blindspot-dev/blindspot/probes/goruntime"
)

// The probe families the agent runs. A new family is a package of its own
// under probes/: list its metrics and its constructor here.

// familyMetrics returns every metric the families produce, for the
// aggregator.
func familyMetrics() []*aggregator.Metric {
	return append(probes.Metrics(), goruntime.Metrics()...)
}

// families builds the families the probe manager runs.
func families(cfg *Config, agg *aggregator.Aggregator) []*probes.Family {
	return []*probes.Family{
		probes.HTTPServerFamily(),
		probes.HTTPClientFamily(agg),
		probes.DBFamily(agg, cfg.DB.PoolNames),
		goruntime.Family(agg, &goruntime.Options{
			Interval:     cfg.Runtime.Interval,
			TopFunctions: cfg.Runtime.TopFunctions,
		}),
	}
}
