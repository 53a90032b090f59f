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

// Structs are the struct fields the sampler reads, for the offset table of
// Go releases (probes/internal/gentable); runtime.g's gopc, stack and m as
// well, in the table since it was first written though nothing reads them
// now.
var Structs = []symbols.StructSpec{
	{Type: "runtime.g", Fields: []string{"goid", "atomicstatus", "startpc", "gopc", "stack", "m"}},
	{Type: "runtime.mstats", Fields: []string{"numgc", "pause_ns", "enablegc"}, Internal: true},
	{Type: "runtime.gcControllerState", Fields: []string{"gcPercent", "gcPercentHeapGoal", "mappedReady"}, Internal: true},
}
