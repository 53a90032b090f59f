// Package probes is the Go side of blindspot's probe families: which Go
// functions each family probes and where inside them, how a process is
// attached and detached, and how the events its BPF programs write are read
// from the per-CPU ring buffers and folded into the aggregator.
//
// The path of one HTTP request: bpf/http_server.c writes an event into the
// ring of the CPU it ran on (ringset.go); that ring's reader decodes it
// (http_server.go) and observes it in the CPU's aggregator shard.
package probes

// The offset table of package symbols (symbols/offsets_table.go), from the
// struct fields every family declares; see probes/internal/gentable.
//go:generate go run ./internal/gentable -out ../symbols/offsets_table.go
