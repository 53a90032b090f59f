package probes

import (
	"github.com/blindspot-dev/blindspot/aggregator"
	"github.com/blindspot-dev/blindspot/probes/goruntime"
	"github.com/blindspot-dev/blindspot/symbols"
)

// runtimeFamily samples the runtime of every Go program on a timer
// (goroutines by start function, GC, GOMAXPROCS, GOGC, process resources):
// no BPF program, no probe in the program, only reads of its memory and of
// /proc (package goruntime).
func runtimeFamily(opts Options, agg *aggregator.Aggregator) *family {
	s := goruntime.New(agg, &goruntime.Options{
		Interval:     opts.RuntimeInterval,
		TopFunctions: opts.RuntimeTopFunctions,
	})
	return &family{
		name:   "go_runtime",
		anchor: "runtime.main",
		attached: func(pid int, bin *symbols.Binary, t aggregator.TargetID) {
			// A part the sampler cannot read (an unknown Go release's
			// offsets) leaves the others running; it says why in Stats.
			_ = s.Attach(pid, bin, t)
		},
		detached: s.Detach,
	}
}
