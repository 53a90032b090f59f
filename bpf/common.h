// Shared definitions for every blindspot uprobe family: Go's register ABI,
// the per-CPU ring buffers, the lost-event counters and helpers to read Go
// values.
#pragma once

#include "types.h"

// The registers a uprobe sees, laid out as the kernel's struct pt_regs for
// the target architecture. Defined here so that no arch uapi headers are
// needed and one source builds for amd64 and arm64.
#if defined(__TARGET_ARCH_x86)
struct go_regs {
	u64 r15, r14, r13, r12, bp, bx, r11, r10, r9, r8, ax, cx, dx, si, di;
	u64 orig_ax, ip, cs, flags, sp, ss;
};
// ABIInternal: the current goroutine lives in R14; integer arguments are
// passed in RAX, RBX, RCX, RDI, RSI, R8, R9, R10, R11.
#define GO_G(r) ((r)->r14)
#define GO_ARG1(r) ((r)->ax)
#define GO_ARG2(r) ((r)->bx)
#define GO_ARG3(r) ((r)->cx)
#define GO_ARG4(r) ((r)->di)
#define GO_ARG5(r) ((r)->si)
#define GO_ARG6(r) ((r)->r8)
#define GO_ARG7(r) ((r)->r9)
#define GO_ARG8(r) ((r)->r10)
#define GO_ARG9(r) ((r)->r11)
#elif defined(__TARGET_ARCH_arm64)
struct go_regs {
	u64 regs[31];
	u64 sp, pc, pstate;
};
// ABIInternal on arm64: the goroutine lives in X28; integer arguments in
// X0..X15.
#define GO_G(r) ((r)->regs[28])
#define GO_ARG1(r) ((r)->regs[0])
#define GO_ARG2(r) ((r)->regs[1])
#define GO_ARG3(r) ((r)->regs[2])
#define GO_ARG4(r) ((r)->regs[3])
#define GO_ARG5(r) ((r)->regs[4])
#define GO_ARG6(r) ((r)->regs[5])
#define GO_ARG7(r) ((r)->regs[6])
#define GO_ARG8(r) ((r)->regs[7])
#define GO_ARG9(r) ((r)->regs[8])
#else
#error "set __TARGET_ARCH_x86 or __TARGET_ARCH_arm64"
#endif

// Probe family identifiers: the first field of every event and the index of
// the lost-event counters. Compared with Go by probes/contract_test.go.
enum family {
	FAMILY_HTTP_SERVER = 1,
	FAMILY_HTTP_CLIENT = 2,
	FAMILY_DB = 3,
	FAMILY_USER_FUNC = 6,
	FAMILY_MAX = 16,
};
// A pointer to the enum, so that every object's BTF carries the values.
const enum family *unused_family __attribute__((unused));

// Every event starts with this header; the reader dispatches on kind.
struct event_header {
	u16 kind;
	u16 flags;
	u32 pid;
	u64 start_ns;
	u64 end_ns;
};

// One ring buffer per CPU, so producers on different CPUs never contend.
// The agent creates the inner rings and fills this array before attaching.
struct ring {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 21);
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 1);  // resized to the number of possible CPUs at load
	__type(key, u32);
	__array(values, struct ring);
} rings SEC(".maps");

// Events that could not be written (ring full or missing), per family.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, FAMILY_MAX);
	__type(key, u32);
	__type(value, u64);
} lost SEC(".maps");

// Bytes of unread data above which a submit wakes the reader at once instead
// of waiting for its timed drain. Set by the agent at load time.
volatile const u64 wake_bytes = 1 << 20;

static __always_inline void count_lost(u32 family)
{
	u64 *n = bpf_map_lookup_elem(&lost, &family);
	if (n)
		*n += 1;
}

// reserve returns room for one event of size bytes in this CPU's ring, or
// NULL after counting the loss.
static __always_inline void *reserve(u32 family, u64 size, void **ring_out)
{
	u32 cpu = bpf_get_smp_processor_id();
	void *ring = bpf_map_lookup_elem(&rings, &cpu);
	if (!ring) {
		count_lost(family);
		return 0;
	}
	void *e = bpf_ringbuf_reserve(ring, size, 0);
	if (!e) {
		count_lost(family);
		return 0;
	}
	*ring_out = ring;
	return e;
}

// submit publishes an event without waking the reader (a wake-up inside a
// uprobe costs ~17 µs here) unless the ring is filling up.
static __always_inline void submit(void *ring, void *e)
{
	u64 flags = BPF_RB_NO_WAKEUP;
	if (bpf_ringbuf_query(ring, BPF_RB_AVAIL_DATA) > wake_bytes)
		flags = BPF_RB_FORCE_WAKEUP;
	bpf_ringbuf_submit(e, flags);
}

// Start maps are keyed by process and goroutine: entry and exit of one call
// run on the same goroutine, whatever thread or CPU carries it.
struct goroutine_key {
	u32 tgid;
	u32 _pad;
	u64 g;
};

// STATUS_INVALID stands for a status word that does not fit an HTTP
// status: the decoder refuses it rather than export its low 16 bits.
#define STATUS_INVALID 0xffff

// read_status reads an int status (net/http's response.status,
// Response.StatusCode) as a u16, or STATUS_INVALID when the word read there
// is not a three-digit number: a wrong offset must not pass as 200.
static __always_inline u16 read_status(u64 addr)
{
	u64 v = 0;
	if (bpf_probe_read_user(&v, sizeof(v), (void *)addr) != 0)
		return STATUS_INVALID;
	return v > 999 ? STATUS_INVALID : (u16)v;
}

// A Go string's header as it sits in memory.
struct go_string {
	u64 ptr;
	s64 len;
};

// copy_go_string copies at most max bytes of the Go string whose header
// was read already; it returns the number of bytes copied.
static __always_inline u32 copy_go_string(char *dst, u32 max, struct go_string s)
{
	if (s.len <= 0 || s.ptr == 0)
		return 0;
	u64 n = (u64)s.len;
	if (n > max)
		n = max;
	asm volatile("" : "+r"(n));  // keep the bound visible to the verifier
	if (n > max)
		return 0;
	if (bpf_probe_read_user(dst, n, (void *)s.ptr) != 0)
		return 0;
	return n;
}

// read_go_string copies at most max bytes of the Go string whose header
// (pointer, length) sits at addr; it returns the number of bytes copied.
static __always_inline u32 read_go_string(char *dst, u32 max, u64 addr)
{
	struct go_string s;
	if (bpf_probe_read_user(&s, sizeof(s), (void *)addr) != 0)
		return 0;
	return copy_go_string(dst, max, s);
}

static __always_inline u64 read_u64(u64 addr)
{
	u64 v = 0;
	bpf_probe_read_user(&v, sizeof(v), (void *)addr);
	return v;
}

// Windows: one bpf_probe_read_user costs ~45 ns here, whatever its size up
// to a few hundred bytes, so fields of one struct that lie close together
// are read at once. The agent computes each window from the fields' proven
// offsets (probes.Window): from the first field's offset, rounded down to 8
// (still inside the struct, whose alignment is 8), to the end of the last
// field, so the window never leaves the struct the fields are in and holds
// the very bytes the reads of each field would. Each field is then taken
// from the window at its offset minus the window's, and only from inside
// what was read.

// read_window reads the len bytes of a window at addr into win (room for
// max bytes, max a constant); 0 when there is no window (len 0, or more
// than max) or the read failed: then read each field alone.
static __always_inline int read_window(void *win, u64 max, u64 addr, u64 len)
{
	if (len == 0 || len > max)
		return 0;
	asm volatile("" : "+r"(len)); // keep the bound visible to the verifier
	if (len > max)
		return 0;
	return bpf_probe_read_user(win, len, (void *)addr) == 0;
}

// win_u64 returns the 8 bytes at rel in a window of len bytes read into
// win (room for max), 0 when they are not all inside it.
static __always_inline u64 win_u64(const void *win, u64 max, u64 len, u64 rel)
{
	if (rel > max - 8 || rel + 8 > len)
		return 0;
	asm volatile("" : "+r"(rel));
	if (rel > max - 8)
		return 0;
	return *(const u64 *)((const char *)win + rel);
}

// win_u8 returns the byte at rel in a window (see win_u64).
static __always_inline u8 win_u8(const void *win, u64 max, u64 len, u64 rel)
{
	if (rel > max - 1 || rel + 1 > len)
		return 0;
	asm volatile("" : "+r"(rel));
	if (rel > max - 1)
		return 0;
	return *((const u8 *)win + rel);
}

// win_string returns the Go string header at rel in a window (see
// win_u64).
static __always_inline struct go_string win_string(const void *win, u64 max, u64 len, u64 rel)
{
	struct go_string s = {};
	if (rel > max - 16 || rel + 16 > len)
		return s;
	s.ptr = win_u64(win, max, len, rel);
	s.len = (s64)win_u64(win, max, len, rel + 8);
	return s;
}

// status_of is an int status word as a u16, or STATUS_INVALID when it is
// not a three-digit number (see read_status).
static __always_inline u16 status_of(u64 v)
{
	return v > 999 ? STATUS_INVALID : (u16)v;
}
