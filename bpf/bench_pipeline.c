//go:build ignore

// The producer of the pipeline benchmark (test/bench/pipeline.go): it
// writes events, byte for byte as the probe families' programs write them,
// into the agent's per-CPU rings at kernel speed, so that what the agent
// spends per event from the ring to the aggregated series can be measured
// at rates no uprobe reaches on this machine (each trap costs µs).
//
// The bench loads it through the probe manager, which wires it to its own
// rings and lost-event counters as it does every family, and runs it with
// BPF_PROG_TEST_RUN and a repeat count: one event per run. It is a socket
// filter only because that is a program type the kernel runs that way; it
// never sees a packet.

#include "common.h"

#define PIPELINE_TEMPLATES 16
#define PIPELINE_EVENT_MAX 1024

// One event as a family's program would write it: the bench builds it from
// the family's own BTF. Runs take the templates in turn.
struct pipeline_template {
	u32 size; // bytes of data that make the event
	u32 _pad;
	u8 data[PIPELINE_EVENT_MAX];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, PIPELINE_TEMPLATES);
	__type(key, u32);
	__type(value, struct pipeline_template);
} pipeline_templates SEC(".maps");

// How many templates are in use; set before loading.
volatile const u32 pipeline_ntemplates = 1;

// Runs so far: the n-th run writes template n % pipeline_ntemplates. One
// producer thread at a time, so a plain increment.
u64 pipeline_seq = 0;

SEC("socket")
int pipeline_produce(void *ctx)
{
	u64 n = pipeline_seq++;
	u32 count = pipeline_ntemplates;
	if (count == 0 || count > PIPELINE_TEMPLATES)
		return 0;
	u32 i = n % count;
	struct pipeline_template *t = bpf_map_lookup_elem(&pipeline_templates, &i);
	if (!t)
		return 0;
	u64 size = t->size;
	if (size < sizeof(struct event_header) || size > PIPELINE_EVENT_MAX)
		return 0;
	asm volatile("" : "+r"(size)); // keep the bound visible to the verifier
	if (size > PIPELINE_EVENT_MAX)
		return 0;
	struct event_header *h = (struct event_header *)t->data;
	// Durations spread over the histograms, from 1 µs to about 67 ms.
	h->end_ns = h->start_ns + 1000 + ((n * 2654435761ULL) & 0x3ffffff);

	// As reserve() and submit() of common.h do: this CPU's ring, no
	// wake-up unless the ring is filling, every failure counted as lost.
	u32 cpu = bpf_get_smp_processor_id();
	void *ring = bpf_map_lookup_elem(&rings, &cpu);
	if (!ring) {
		count_lost(h->kind);
		return 0;
	}
	u64 flags = BPF_RB_NO_WAKEUP;
	if (bpf_ringbuf_query(ring, BPF_RB_AVAIL_DATA) > wake_bytes)
		flags = BPF_RB_FORCE_WAKEUP;
	if (bpf_ringbuf_output(ring, t->data, size, flags) != 0)
		count_lost(h->kind);
	return 0;
}
