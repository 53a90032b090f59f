package goruntime

import (
	"github.com/blindspot-dev/blindspot/aggregator"
	"github.com/blindspot-dev/blindspot/probes"
	"github.com/blindspot-dev/blindspot/symbols"
)

// Family samples the runtime of every Go program on a timer (goroutines by
// start function, GC, GOMAXPROCS, GOGC, process resources): no BPF program,
// no probe in the program, only reads of its memory and of /proc.
func Family(agg *aggregator.Aggregator, opts *Options) *probes.Family {
	s := New(agg, opts)
	return &probes.Family{
		Name:   "go_runtime",
		Anchor: "runtime.main",
		Attached: func(pid int, bin *symbols.Binary, t aggregator.TargetID) {
			// A part the sampler cannot read (an unknown Go release's
			// offsets) leaves the others running; it says why in Stats.
			_ = s.Attach(pid, bin, t)
		},
		Detached: s.Detach,
	}
}
