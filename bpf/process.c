//go:build ignore

// Process life cycle, from a raw scheduler tracepoint (no kprobes, no tracefs):
// every exec is reported so that a Go program started after the agent is
// instrumented at once, and an exec that replaces a tracked program's image
// is noticed.

#include "types.h"

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 16);
} execs SEC(".maps");

SEC("raw_tracepoint/sched_process_exec")
int on_exec(void *ctx)
{
	u32 pid = current_tgid();
	// A full ring loses nothing for good: the agent also rescans /proc.
	bpf_ringbuf_output(&execs, &pid, sizeof(pid), 0);
	return 0;
}
