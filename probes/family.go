package probes

import (
	"github.com/cilium/ebpf"

	"github.com/blindspot-dev/blindspot/aggregator"
	"github.com/blindspot-dev/blindspot/probes/goruntime"
	"github.com/blindspot-dev/blindspot/symbols"
)

// Event kinds written by the BPF programs: enum family of bpf/common.h
// (compared with it by TestSharedConstantsMatchC).
const (
	kindHTTPServer = 1
	kindHTTPClient = 2
	kindDB         = 3
	kindUserFunc   = 6
	maxKinds       = 16
)

// Probe is one uprobe of a family: a Go function and the BPF program that
// runs at its entry. Families list their probes as plain data.
type Probe struct {
	// Function is the Go function, as Go prints it.
	Function string
	// Program is the BPF program's name in the family's collection.
	Program string
	// Optional probes are skipped when the function is absent (for example
	// the HTTP/2 server in a program that never links it).
	Optional bool
	// Idempotent programs may run twice for one call: they may then sit on
	// the prologue's emulated stack-check branch where the entry itself
	// would be single-stepped (Go 1.19 and 1.20), at a third of the cost.
	Idempotent bool
	// Returns attaches the program at every return instruction of the
	// function instead of at its entry: the exit probe of a function with
	// no cheaper end. Never a uretprobe: those crash Go programs.
	Returns bool
	// Call, when set, attaches at every direct call from Function to the
	// function named Call (an emulated CALL), or with AfterCall at the
	// instruction each such call returns to: the two ends of one blocking
	// call inside a function, hit only when that path runs.
	Call      string
	AfterCall bool
}

// decoder checks one event read from a ring and, when every value in it
// is plausible, folds it into the reader's shard. It must not allocate once
// the event's labels have been seen.
type decoder func(sh *aggregator.Shard, t aggregator.TargetID, raw []byte) verdict

// family is one group of probes whose BPF programs share a collection.
type family struct {
	// name labels the family's self-metrics ("http_server").
	name string
	kind uint16
	// anchor is the function whose presence says the family applies.
	anchor string
	probes []Probe
	// spec loads the family's BPF collection.
	spec func() (*ebpf.CollectionSpec, error)
	// configMap (keyed by PID) receives what configure returns.
	configMap string
	// startMap holds calls in flight, keyed by struct goroutine_key.
	startMap string
	// configure reads what the BPF programs need to know about a binary.
	configure func(b *symbols.Binary) (any, error)
	// leaveOut, when set, names optional probes that must not be placed in
	// a binary (function → reason), e.g. because the offsets their programs
	// read are not proven there.
	leaveOut func(b *symbols.Binary) map[string]string
	// decode checks one event and folds it into a shard (see verdict).
	decode decoder
	// invalid lists the reason labels of blindspot_events_invalid_total
	// the decoder can report (each is exported from the start, at 0).
	invalid []string
	// attached and detached, when set, follow the processes the family is
	// attached to (for samplers that read program state on a timer).
	attached func(pid int, bin *symbols.Binary, t aggregator.TargetID)
	detached func(pid int)
}

// Metrics returns every metric the probe families produce, for the
// aggregator.
func Metrics() []*aggregator.Metric {
	return append([]*aggregator.Metric{
		httpServerDuration,
		httpClientDuration, dbOperationDuration, dbConnCount, dbConnMax, dbConnPending, dbConnWait,
	}, goruntime.Metrics()...)
}

// FamilyProbes returns the probes of a family by its name (http_server,
// http_client, db), for tools that must place probes exactly where the
// agent does, such as the benchmark's empty-probe floor.
func FamilyProbes(name string) []Probe {
	switch name {
	case "http_server":
		return append([]Probe(nil), httpServerProbes...)
	case "http_client":
		return append([]Probe(nil), httpClientProbes...)
	case "db":
		return append([]Probe(nil), dbProbes...)
	}
	return nil
}

// families lists every probe family. Add a family here and its metrics in
// Metrics.
func families(opts Options, agg *aggregator.Aggregator) []*family {
	return []*family{
		httpServerFamily(),
		httpClientFamily(agg), dbFamily(opts, agg),
		runtimeFamily(opts, agg),
	}
}
