//go:build ignore

// The floor of the overhead benchmark (test/bench): uprobe programs that do
// nothing but count their hits in a per-CPU array, one slot per probe site.
// Attached at the same sites as a probe family (http_server, http_client,
// db: one program, and one slot, per probe of the family), they measure what
// the traps alone cost, so that blindspot's own BPF work and reading can be
// told apart from it.

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define BENCH_SITES 16

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

SEC("uprobe")
int uprobe_bench_site3(void *ctx) { return hit(3); }

SEC("uprobe")
int uprobe_bench_site4(void *ctx) { return hit(4); }

SEC("uprobe")
int uprobe_bench_site5(void *ctx) { return hit(5); }

SEC("uprobe")
int uprobe_bench_site6(void *ctx) { return hit(6); }

SEC("uprobe")
int uprobe_bench_site7(void *ctx) { return hit(7); }

SEC("uprobe")
int uprobe_bench_site8(void *ctx) { return hit(8); }

SEC("uprobe")
int uprobe_bench_site9(void *ctx) { return hit(9); }

SEC("uprobe")
int uprobe_bench_site10(void *ctx) { return hit(10); }

SEC("uprobe")
int uprobe_bench_site11(void *ctx) { return hit(11); }

SEC("uprobe")
int uprobe_bench_site12(void *ctx) { return hit(12); }

SEC("uprobe")
int uprobe_bench_site13(void *ctx) { return hit(13); }

SEC("uprobe")
int uprobe_bench_site14(void *ctx) { return hit(14); }

SEC("uprobe")
int uprobe_bench_site15(void *ctx) { return hit(15); }

char LICENSE[] SEC("license") = "Dual MIT/GPL";
