//go:build ignore

// The floor of the overhead benchmark (test/bench): uprobe programs that do
// nothing but count their hits in a per-CPU array, one slot per probe site.
// Attached at the same sites as the http_server family, they measure what
// the traps alone cost, so that blindspot's own BPF work and reading can be
// told apart from it.

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define BENCH_SITES 4

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, BENCH_SITES);
	__type(key, __u32);
	__type(value, __u64);
} bench_hits SEC(".maps");

static __always_inline int hit(__u32 site)
{
	__u64 *n = bpf_map_lookup_elem(&bench_hits, &site);
	if (n)
		*n += 1;
	return 0;
}

SEC("uprobe")
int uprobe_bench_site0(void *ctx) { return hit(0); }

SEC("uprobe")
int uprobe_bench_site1(void *ctx) { return hit(1); }

SEC("uprobe")
int uprobe_bench_site2(void *ctx) { return hit(2); }

char LICENSE[] SEC("license") = "Dual MIT/GPL";
