// Package probes is the machinery every probe family uses: the family
// contract as plain data (Family, Probe, Verdict), attaching and detaching
// a process (Manager), the per-CPU ring buffers and their readers, the maps
// of calls in flight, and the invalid-event policy. The families are
// packages of their own (probes/httpserver, probes/httpclient, probes/dbsql,
// probes/goruntime, probes/userfunc), handed to New by its caller. A family
// whose probes follow configuration entries (the business functions)
// implements Entries and attaches them itself through its Handle.
//
// The path of one HTTP request: bpf/http_server.c writes an event into the
// ring of the CPU it ran on (ringset.go); that ring's reader hands it to
// the decoder of its kind (probes/httpserver), which observes it in the
// CPU's aggregator shard.
package probes

// The offset table of package symbols (symbols/offsets_table.go), from the
// struct fields every family declares; see probes/internal/gentable.
//go:generate go run ./internal/gentable -out ../symbols/offsets_table.go
