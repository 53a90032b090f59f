package main

import (
	"github.com/blindspot-dev/blindspot/aggregator"
	"github.com/blindspot-dev/blindspot/probes"
	"github.com/blindspot-dev/blindspot/probes/dbsql"
	"github.com/blindspot-dev/blindspot/probes/goruntime"
	"github.com/blindspot-dev/blindspot/probes/grpcclient"
	"github.com/blindspot-dev/blindspot/probes/grpcserver"
	"github.com/blindspot-dev/blindspot/probes/httpclient"
	"github.com/blindspot-dev/blindspot/probes/httpserver"
	"github.com/blindspot-dev/blindspot/probes/userfunc"
)

// The probe families the agent runs. A new family is a package of its own
// under probes/: list its metrics and its constructor here.

// familyMetrics returns every metric the families produce, for the
// aggregator.
func familyMetrics() []*aggregator.Metric {
	var out []*aggregator.Metric
	for _, m := range [][]*aggregator.Metric{
		httpserver.Metrics(), httpclient.Metrics(), dbsql.Metrics(), goruntime.Metrics(),
		grpcserver.Metrics(), grpcclient.Metrics(),
	} {
		out = append(out, m...)
	}
	return out
}

// families builds the families the probe manager runs; user is the
// business functions' family, whose metrics come from the configuration.
func families(cfg *Config, agg *aggregator.Aggregator, user *userfunc.Probes) []*probes.Family {
	return []*probes.Family{
		httpserver.Family(),
		httpclient.Family(agg),
		dbsql.Family(agg, cfg.DB.PoolNames),
		goruntime.Family(agg, &goruntime.Options{
			Interval:     cfg.Runtime.Interval,
			TopFunctions: cfg.Runtime.TopFunctions,
		}),
		grpcserver.Family(agg),
		grpcclient.Family(agg),
		user.Family(),
	}
}
