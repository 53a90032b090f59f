//go:build ignore

// Business functions the user names in the configuration. One set of
// generic programs serves every entry: the BPF cookie of each uprobe is the
// id of a uf_spec (per entry and binary) that says where the labels and the
// outcome are (registers or stack slots, as Go's register ABI places them).
//
//   uf_enter: the function's entry site (PUSHQ BP, else the first
//             instruction after the stack check: runs once per call). Reads
//             the labels and stores the start keyed by {pid, spec, goroutine}.
//   uf_exit:  every RET of the function. Finds the start, checks it is this
//             call's (same stack depth, when a recursive call entered since:
//             an inner call is ignored), reads the outcome and writes one
//             event.
//   uf_count: the entry site of a count entry without outcome: reads the
//             labels and writes one event; no start, no exit probe.
//
// A call that panics out of the function never reaches a RET: its start is
// replaced by the next call on the goroutine (or swept by the agent) and the
// call is not counted (see README). A start that finds the map of calls in
// flight full is counted as lost: the call is not measured.

#include "common.h"

typedef __s8 s8;
typedef __s16 s16;
typedef __s32 s32;

#define UF_MAX_LABELS 4
#define UF_MAX_HOPS 4
#define UF_STR_MAX 64

// bpf_map_update_elem with BPF_NOEXIST fails with -EEXIST on a key present.
#define EEXIST 17

// Label types and outcomes, compared with Go by probes/contract_test.go.
// Enums, each with a pointer to it, so that the object's BTF carries the
// values.
enum uf_label_type {
	UF_STRING = 1,
	UF_INT = 2,
	UF_UINT = 3,
	UF_BOOL = 4,
};
const enum uf_label_type *unused_uf_label_type __attribute__((unused));

// How a spec's outcome is read (uf_spec.outcome).
enum uf_outcome_kind {
	UF_OUTCOME_ERROR = 1,
	UF_OUTCOME_BOOL = 2,
};
const enum uf_outcome_kind *unused_uf_outcome_kind __attribute__((unused));

// Event outcome values (uf_event.outcome).
enum uf_outcome {
	UF_SUCCESS = 1,
	UF_FAILURE = 2,
};
const enum uf_outcome *unused_uf_outcome __attribute__((unused));

struct uf_loc {
	s32 reg;   // integer register index, or -1: on the stack
	s32 stack; // byte offset from SP+8 when reg < 0
};

struct uf_label {
	u8 type;
	u8 size;
	u8 hops;
	u8 max_len;
	u32 _pad;
	struct uf_loc a;
	struct uf_loc b;
	u32 off[UF_MAX_HOPS];
};

struct uf_spec {
	u32 id;
	u8 outcome;
	u8 nlabels;
	u16 _pad;
	struct uf_loc result;
	struct uf_label labels[UF_MAX_LABELS];
};

struct uf_values {
	u64 num[UF_MAX_LABELS];
	u8 len[UF_MAX_LABELS];
	u32 _pad;
	char str[UF_MAX_LABELS][UF_STR_MAX];
};

struct uf_start {
	u64 start_ns; // first: the agent's sweep reads it
	u64 depth;    // goroutine stack top minus SP at entry
	// The spec's outcome, copied at entry so that the exit needs no
	// lookup of the spec.
	u8 outcome;
	// Set when a recursive call entered while this one was in flight:
	// only then must a RET prove, by its stack depth, that it is this
	// call's.
	u8 nested;
	u8 _pad[6];
	struct uf_loc result;
	struct uf_values v;
};

struct uf_event {
	struct event_header hdr;
	u32 id;
	u8 outcome;
	u8 _pad[3];
	struct uf_values v;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, u32);
	__type(value, struct uf_spec);
} uf_specs SEC(".maps");

// Calls in flight. The key's middle word is the spec id, so that nested
// probed functions on one goroutine do not collide. A plain hash: cheaper
// per update than an LRU map, and it never evicts a call in flight
// silently; a start that finds it full is counted as lost.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct goroutine_key);
	__type(value, struct uf_start);
} uf_starts SEC(".maps");

// Scratch for building a start (too big for the BPF stack).
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, struct uf_start);
} uf_scratch SEC(".maps");

const struct uf_event *unused_uf_event __attribute__((unused));
const struct uf_spec *unused_uf_spec __attribute__((unused));

#if defined(__TARGET_ARCH_x86)
#define GO_SP(r) ((r)->sp)
#else
#define GO_SP(r) ((r)->sp)
#endif

static __always_inline u64 reg_value(struct go_regs *ctx, s32 reg)
{
	switch (reg) {
	case 0: return GO_ARG1(ctx);
	case 1: return GO_ARG2(ctx);
	case 2: return GO_ARG3(ctx);
	case 3: return GO_ARG4(ctx);
	case 4: return GO_ARG5(ctx);
	case 5: return GO_ARG6(ctx);
	case 6: return GO_ARG7(ctx);
	case 7: return GO_ARG8(ctx);
	case 8: return GO_ARG9(ctx);
#if defined(__TARGET_ARCH_arm64)
	case 9: return ctx->regs[9];
	case 10: return ctx->regs[10];
	case 11: return ctx->regs[11];
	case 12: return ctx->regs[12];
	case 13: return ctx->regs[13];
	case 14: return ctx->regs[14];
	case 15: return ctx->regs[15];
#endif
	}
	return 0;
}

static __always_inline u64 loc_value(struct go_regs *ctx, const struct uf_loc *l)
{
	if (l->reg >= 0)
		return reg_value(ctx, l->reg);
	return read_u64(GO_SP(ctx) + 8 + (s64)l->stack);
}

static __always_inline u64 narrow(u64 v, u8 size, u8 type)
{
	switch (size) {
	case 1:
		return type == UF_INT ? (u64)(s64)(s8)v : (v & 0xff);
	case 2:
		return type == UF_INT ? (u64)(s64)(s16)v : (v & 0xffff);
	case 4:
		return type == UF_INT ? (u64)(s64)(s32)v : (v & 0xffffffff);
	}
	return v;
}

static __always_inline u32 read_str(char *dst, u32 max, u64 ptr, s64 len)
{
	if (len <= 0 || ptr == 0)
		return 0;
	u64 n = (u64)len;
	if (n > max)
		n = max;
	if (n > UF_STR_MAX)
		n = UF_STR_MAX;
	asm volatile("" : "+r"(n));
	if (n > UF_STR_MAX || n == 0)
		return 0;
	if (bpf_probe_read_user(dst, n, (void *)ptr) != 0)
		return 0;
	return n;
}

// read_label fills label i of v from the registers and memory.
static __always_inline void read_label(struct go_regs *ctx, const struct uf_label *l, struct uf_values *v, int i)
{
	v->num[i] = 0;
	v->len[i] = 0;
	if (l->type == 0)
		return;
	u64 w = loc_value(ctx, &l->a);
	if (l->hops == 0) {
		if (l->type == UF_STRING) {
			s64 len = (s64)loc_value(ctx, &l->b);
			v->len[i] = read_str(v->str[i], l->max_len, w, len);
			return;
		}
		v->num[i] = narrow(w, l->size, l->type);
		return;
	}
	// Follow the field path: every hop but the last dereferences a pointer.
	u64 addr = 0;
#pragma unroll
	for (int h = 0; h < UF_MAX_HOPS; h++) {
		if (h >= l->hops)
			break;
		if (w == 0)
			return;
		addr = w + l->off[h];
		if (h + 1 < l->hops)
			w = read_u64(addr);
	}
	if (l->type == UF_STRING) {
		struct {
			u64 ptr;
			s64 len;
		} s = {};
		if (bpf_probe_read_user(&s, sizeof(s), (void *)addr) != 0)
			return;
		v->len[i] = read_str(v->str[i], l->max_len, s.ptr, s.len);
		return;
	}
	u64 x = 0;
	u32 size = l->size;
	if (size > 8)
		size = 8;
	if (size == 0)
		size = 1;
	asm volatile("" : "+r"(size));
	if (size > 8 || size == 0)
		return;
	if (bpf_probe_read_user(&x, size, (void *)addr) != 0)
		return;
	v->num[i] = narrow(x, l->size, l->type);
}

static __always_inline void read_labels(struct go_regs *ctx, const struct uf_spec *s, struct uf_values *v)
{
#pragma unroll
	for (int i = 0; i < UF_MAX_LABELS; i++) {
		if (i < s->nlabels)
			read_label(ctx, &s->labels[i], v, i);
		else {
			v->num[i] = 0;
			v->len[i] = 0;
		}
	}
}

// stack_depth is how far SP is below the goroutine's stack top (g.stack.hi,
// the second word of runtime.g): unchanged when the runtime moves the stack.
static __always_inline u64 stack_depth(struct go_regs *ctx)
{
	u64 hi = read_u64(GO_G(ctx) + 8);
	return hi - GO_SP(ctx);
}

SEC("uprobe/uf_enter")
int uprobe_uf_enter(struct go_regs *ctx)
{
	u32 id = (u32)bpf_get_attach_cookie(ctx);
	const struct uf_spec *s = bpf_map_lookup_elem(&uf_specs, &id);
	if (!s)
		return 0;
	u32 zero = 0;
	struct uf_start *st = bpf_map_lookup_elem(&uf_scratch, &zero);
	if (!st)
		return 0;
	struct goroutine_key k = {.tgid = current_tgid(), ._pad = id, .g = GO_G(ctx)};
	u64 depth = stack_depth(ctx);
	st->depth = depth;
	st->nested = 0;
	st->outcome = s->outcome;
	st->result = s->result;
	read_labels(ctx, s, &st->v);
	st->start_ns = bpf_ktime_get_ns();
	// Most calls find no start on their goroutine: one update, no lookup.
	long err = bpf_map_update_elem(&uf_starts, &k, st, BPF_NOEXIST);
	if (err == 0)
		return 0;
	if (err != -EEXIST) {
		count_lost(FAMILY_USER_FUNC); // the map is full
		return 0;
	}
	struct uf_start *old = bpf_map_lookup_elem(&uf_starts, &k);
	if (old && old->depth < depth) {
		// A recursive call inside one we measure: the outer one counts,
		// and its RETs now check their depth.
		old->nested = 1;
		return 0;
	}
	// A start left by a call that never returned (it panicked): replaced
	// (which succeeds even in a full map). Should that fail, the stale
	// start must not be taken for this call's.
	if (bpf_map_update_elem(&uf_starts, &k, st, BPF_ANY) != 0) {
		bpf_map_delete_elem(&uf_starts, &k);
		count_lost(FAMILY_USER_FUNC);
	}
	return 0;
}

SEC("uprobe/uf_exit")
int uprobe_uf_exit(struct go_regs *ctx)
{
	u64 end = bpf_ktime_get_ns();
	u32 id = (u32)bpf_get_attach_cookie(ctx);
	struct goroutine_key k = {.tgid = current_tgid(), ._pad = id, .g = GO_G(ctx)};
	struct uf_start *st = bpf_map_lookup_elem(&uf_starts, &k);
	if (!st)
		return 0;
	// Without a recursive call since the entry, this RET is the call's;
	// with one, the stack depth tells (reading it costs a read of the
	// goroutine).
	if (st->nested && st->depth != stack_depth(ctx))
		return 0; // the RET of a recursive inner call
	void *ring;
	struct uf_event *e = reserve(FAMILY_USER_FUNC, sizeof(*e), &ring);
	if (!e) {
		bpf_map_delete_elem(&uf_starts, &k);
		return 0;
	}
	e->hdr.kind = FAMILY_USER_FUNC;
	e->hdr.flags = 0;
	e->hdr.pid = k.tgid;
	e->hdr.start_ns = st->start_ns;
	e->hdr.end_ns = end;
	e->id = id;
	e->outcome = 0;
	e->_pad[0] = e->_pad[1] = e->_pad[2] = 0;
	if (st->outcome == UF_OUTCOME_ERROR)
		e->outcome = loc_value(ctx, &st->result) == 0 ? UF_SUCCESS : UF_FAILURE;
	else if (st->outcome == UF_OUTCOME_BOOL)
		e->outcome = (loc_value(ctx, &st->result) & 0xff) ? UF_SUCCESS : UF_FAILURE;
	__builtin_memcpy(&e->v, &st->v, sizeof(e->v));
	bpf_map_delete_elem(&uf_starts, &k);
	submit(ring, e);
	return 0;
}

SEC("uprobe/uf_count")
int uprobe_uf_count(struct go_regs *ctx)
{
	u32 id = (u32)bpf_get_attach_cookie(ctx);
	const struct uf_spec *s = bpf_map_lookup_elem(&uf_specs, &id);
	if (!s)
		return 0;
	void *ring;
	struct uf_event *e = reserve(FAMILY_USER_FUNC, sizeof(*e), &ring);
	if (!e)
		return 0;
	u64 now = bpf_ktime_get_ns();
	e->hdr.kind = FAMILY_USER_FUNC;
	e->hdr.flags = 0;
	e->hdr.pid = current_tgid();
	e->hdr.start_ns = now;
	e->hdr.end_ns = now;
	e->id = id;
	e->outcome = 0;
	e->_pad[0] = e->_pad[1] = e->_pad[2] = 0;
	read_labels(ctx, s, &e->v);
	submit(ring, e);
	return 0;
}

