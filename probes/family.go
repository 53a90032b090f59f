package probes

import (
	"github.com/cilium/ebpf"

	"github.com/blindspot-dev/blindspot/aggregator"
	"github.com/blindspot-dev/blindspot/symbols"
)

// MaxKinds bounds the event kinds (enum family of bpf/common.h, where each
// family with events owns its kind, compared with the C side by each
// family's tests): the size of the manager's per-kind tables and of the
// lost-event counters (FAMILY_MAX).
const MaxKinds = 16

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
	// After, with Call, keeps only the first call to Call that follows the
	// one call from Function to the function named After (in address
	// order): the call that handles what After returned.
	After string
}

// Decoder checks one event read from a ring and, when every value in it
// is plausible, folds it into the reader's shard. It must not allocate once
// the event's labels have been seen.
type Decoder func(sh *aggregator.Shard, t aggregator.TargetID, raw []byte) Verdict

// Family is one probe family as plain data: the Go functions it probes,
// the BPF collection whose programs run there, what those programs need to
// know about a binary, and how their events are decoded. The manager's
// caller hands it the families to run (New); a family is its own package
// (probes/httpserver, ...), and the manager knows nothing of any of them.
type Family struct {
	// Name labels the family's self-metrics and status ("http_server").
	Name string
	// Kind is the event kind the family's BPF programs write in every
	// event's header (enum family of bpf/common.h); 0 for a family
	// without events.
	Kind uint16
	// Anchor is the function whose presence says the family applies.
	Anchor string
	// Probes are where the family's programs attach.
	Probes []Probe
	// Spec loads the family's BPF collection; nil for a family without
	// BPF programs (a sampler driven by Attached and Detached).
	Spec func() (*ebpf.CollectionSpec, error)
	// ConfigMap (keyed by PID) receives what Configure returns.
	ConfigMap string
	// StartMap holds calls in flight, keyed by struct goroutine_key, each
	// value starting with the call's start time (a u64).
	StartMap string
	// StartMapFixed keeps the start map's size as the C source declares
	// it instead of Options.MaxInFlight (unless Options.MaxInFlight is
	// smaller).
	StartMapFixed bool
	// InFlightMaps name more maps of the family keyed and valued like
	// StartMap (e.g. waits, or state recorded for a call in flight): swept
	// and emptied of a process's entries like it, each kept at the size
	// the C source declares unless Options.MaxInFlight is smaller.
	InFlightMaps []string
	// Configure reads what the BPF programs need to know about a binary.
	Configure func(b *symbols.Binary) (any, error)
	// LeaveOut, when set, names optional probes that must not be placed in
	// a binary (function → reason), e.g. because the offsets their programs
	// read are not proven there.
	LeaveOut func(b *symbols.Binary) map[string]string
	// Decode checks one event and folds it into a shard (see Verdict).
	Decode Decoder
	// Invalid lists the reason labels of blindspot_events_invalid_total
	// the decoder can report (each is exported from the start, at 0).
	Invalid []string
	// Attached and Detached, when set, follow the processes the family is
	// attached to (for samplers that read program state on a timer).
	Attached func(pid int, bin *symbols.Binary, t aggregator.TargetID)
	Detached func(pid int)
	// Entries, when set, makes the family one whose probes follow the
	// entries of a configuration instead of Probes (see Entries).
	Entries Entries
}

// Entries is implemented by a family whose probes follow the entries of a
// configuration (the business functions, probes/userfunc) rather than a
// fixed list. The manager loads its collection, reads and counts its
// events and sweeps its calls in flight, but Attach and Detach leave its
// probes alone: the family attaches each entry to each process itself
// through the Handle it is given, each site's BPF cookie naming the entry,
// and the manager tells it what becomes of processes and binaries.
type Entries interface {
	// Loaded hands the family its loaded collection (once, from New).
	Loaded(h *Handle)
	// Entry names the entry a well-formed event of the family belongs to:
	// the invalid-event policy weighs each entry in each process apart.
	// It must not allocate.
	Entry(raw []byte) uint32
	// DetachEntry detaches one entry from one process for the
	// invalid-event policy, its status the reason given; false when the
	// entry is not attached there (any more).
	DetachEntry(pid int, entry uint32, reason string) (ProbeStatus, bool)
	// ProcessDetached says that Manager.Detach released a process.
	ProcessDetached(pid int)
	// BinaryForgotten says that no process runs bin any more
	// (Manager.Forget).
	BinaryForgotten(bin *symbols.Binary)
}

// PerShard builds one value per ring shard of agg, looked up by shard
// without a lock (the map is never written after construction).
func PerShard[T any](agg *aggregator.Aggregator, mk func() T) map[*aggregator.Shard]T {
	out := map[*aggregator.Shard]T{}
	if agg == nil {
		return out
	}
	for i := 0; i < agg.Shards(); i++ {
		out[agg.Shard(i)] = mk()
	}
	return out
}
