//go:build ignore

// gRPC calls made with grpc-go's ClientConn (Invoke for unary calls,
// NewStream for streams), timed from the creation of the call's stream to
// its end: the one call of (*clientStream).finish grpc-go makes per call,
// with the call's error (nil or io.EOF for OK). A stream's end may come on
// another goroutine than its start (the context watcher, a RecvMsg), so
// calls in flight are keyed by the *clientStream once it exists.
//
// A call whose stream could not be created (a refused connection's
// Unavailable, a deadline passing while the name resolves or the
// connection is made, a closed ClientConn) gets no finish: grpc-go returns
// its error from newClientStream instead. Every return of newClientStream
// is probed, and an error there ends a call that finish did not end.
//
//   start:   google.golang.org/grpc.newClientStream      (by goroutine)
//   bind:    google.golang.org/grpc.(*clientStream).newAttemptLocked
//            (first attempt: copies the start to the clientStream)
//   created: every RET of google.golang.org/grpc.newClientStream
//            (error in results 3-4: a call that failed before its stream
//            existed, or whose stream finish did not end)
//   finish:  google.golang.org/grpc.(*clientStream).finish

#include "common.h"
#include "go_error.h"

#define GRPC_METHOD_MAX 128
#define GRPC_TARGET_MAX 192

// The family's event kind: its own, outside enum family of common.h so
// that adding it changes no other family's objects (below FAMILY_MAX).
enum grpc_client_kind {
	FAMILY_GRPC_CLIENT = 10,
};
const enum grpc_client_kind *unused_grpc_client_kind __attribute__((unused));

struct grpc_client_offsets {
	u64 cc_target;    // grpc.ClientConn.target (the user's dial target)
	u64 error_s;      // internal/status.Error.s
	u64 status_s;     // internal/status.Status.s
	u64 spb_code;     // genproto rpc/status.Status.Code
};

// A call in flight: keyed by goroutine while newClientStream runs, and by
// clientStream (a goroutine_key whose g is the *clientStream) from its
// first attempt until finish. Both live in one map: a goroutine and a
// clientStream are distinct live objects, so their addresses never meet.
struct grpc_client_start {
	u64 start_ns;
	u64 cc;         // *ClientConn
	u64 method;     // the method string's data and length
	u64 method_len;
	u64 cs;         // in the goroutine's entry: the clientStream it was copied to
};

struct grpc_client_event {
	struct event_header hdr;
	struct go_error err; // the error finish got (type 0: nil)
	u32 code;            // spb.Status.Code read as if err were a *status.Error
	u16 method_len;      // full lengths: more than the buffer means cut
	u16 target_len;
	char method[GRPC_METHOD_MAX];
	char target[GRPC_TARGET_MAX];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, u32);
	__type(value, struct grpc_client_offsets);
} grpc_client_config SEC(".maps");

// Calls in flight (see grpc_client_start). A plain hash, not an LRU: a
// start or bind that finds it full is counted as lost instead of evicting
// another call silently; entries whose end never came (a stream its user
// never drained) are swept by the agent after a bound.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct goroutine_key);
	__type(value, struct grpc_client_start);
} grpc_client_starts SEC(".maps");

const struct grpc_client_event *unused_grpc_client_event __attribute__((unused));

// emit writes the event of a call started at s that ended with the error
// (itab, data), or with nil.
static __always_inline void emit(u32 tgid, const struct grpc_client_start *s, u64 itab, u64 data)
{
	const struct grpc_client_offsets *off = bpf_map_lookup_elem(&grpc_client_config, &tgid);
	if (!off)
		return;
	void *ring;
	struct grpc_client_event *e = reserve(FAMILY_GRPC_CLIENT, sizeof(*e), &ring);
	if (!e)
		return;
	e->hdr.kind = FAMILY_GRPC_CLIENT;
	e->hdr.flags = 0;
	e->hdr.pid = tgid;
	e->hdr.start_ns = s->start_ns;
	e->hdr.end_ns = bpf_ktime_get_ns();
	u64 head[2] = {};
	int have_head = capture_go_error_head(&e->err, itab, data, 0, 0, head);
	// The code as a *status.Error holds it; user space uses it only when
	// the error's type is that one. Its Status pointer (status.Error.s,
	// the struct's one field, at 0) is one of the two words
	// capture_go_error read at data already: not read again.
	e->code = 0xffffffff;
	if (itab && data) {
		u64 st;
		if (have_head && off->error_s == 0)
			st = head[0];
		else if (have_head && off->error_s == 8)
			st = head[1];
		else
			st = read_u64(data + off->error_s);
		u64 spb = st ? read_u64(st + off->status_s) : 0;
		if (spb)
			bpf_probe_read_user(&e->code, sizeof(e->code), (void *)(spb + off->spb_code));
	}
	u64 mlen = s->method_len;
	e->method_len = mlen > 0xffff ? 0xffff : (u16)mlen;
	u64 n = mlen > GRPC_METHOD_MAX ? GRPC_METHOD_MAX : mlen;
	asm volatile("" : "+r"(n));
	if (n > GRPC_METHOD_MAX || bpf_probe_read_user(e->method, n, (void *)s->method) != 0)
		e->method_len = 0;
	e->target_len = 0;
	if (s->cc) {
		// The target's header once: its bytes, and its full length.
		struct go_string t = {};
		bpf_probe_read_user(&t, sizeof(t), (void *)(s->cc + off->cc_target));
		e->target_len = copy_go_string(e->target, GRPC_TARGET_MAX, t);
		u64 full = t.len < 0 ? 0 : (u64)t.len;
		if (full > e->target_len)
			e->target_len = full > 0xffff ? 0xffff : (u16)full;
	}
	submit(ring, e);
}

SEC("uprobe/grpc_client_start")
int uprobe_grpc_client_start(struct go_regs *ctx)
{
	struct goroutine_key k = {.tgid = current_tgid(), .g = GO_G(ctx)};
	// newClientStream(ctx context.Context, desc *StreamDesc, cc *ClientConn,
	// method string, opts ...CallOption): ctx in args 1-2, desc 3, cc 4,
	// method 5-6.
	struct grpc_client_start s = {
		.start_ns = bpf_ktime_get_ns(),
		.cc = GO_ARG4(ctx),
		.method = GO_ARG5(ctx),
		.method_len = GO_ARG6(ctx),
	};
	if (bpf_map_update_elem(&grpc_client_starts, &k, &s, BPF_ANY) != 0)
		count_lost(FAMILY_GRPC_CLIENT);
	return 0;
}

SEC("uprobe/grpc_client_bind")
int uprobe_grpc_client_bind(struct go_regs *ctx)
{
	struct goroutine_key k = {.tgid = current_tgid(), .g = GO_G(ctx)};
	struct grpc_client_start *sp = bpf_map_lookup_elem(&grpc_client_starts, &k);
	if (!sp || sp->cs)
		return 0; // a retry's attempt, or a later attempt of this creation
	// (*clientStream).newAttemptLocked(cs, isTransparent): cs in arg 1.
	struct goroutine_key ck = {.tgid = k.tgid, .g = GO_ARG1(ctx)};
	struct grpc_client_start s = *sp;
	// BPF_ANY: an entry left at this address belonged to a clientStream
	// that is gone.
	if (bpf_map_update_elem(&grpc_client_starts, &ck, &s, BPF_ANY) != 0) {
		// Full: the call could not be ended, so it is lost, creation too.
		bpf_map_delete_elem(&grpc_client_starts, &k);
		count_lost(FAMILY_GRPC_CLIENT);
		return 0;
	}
	sp->cs = ck.g;
	return 0;
}

SEC("uprobe/grpc_client_created")
int uprobe_grpc_client_created(struct go_regs *ctx)
{
	struct goroutine_key k = {.tgid = current_tgid(), .g = GO_G(ctx)};
	struct grpc_client_start *sp = bpf_map_lookup_elem(&grpc_client_starts, &k);
	if (!sp)
		return 0;
	struct grpc_client_start s = *sp;
	bpf_map_delete_elem(&grpc_client_starts, &k);
	// At a RET of newClientStream (_ ClientStream, err error): the
	// results in the argument registers, err's itab and data in 3 and 4.
	u64 itab = GO_ARG3(ctx), data = GO_ARG4(ctx);
	if (!itab)
		return 0; // created: finish ends the call
	if (s.cs) {
		// Its stream existed: ended here unless finish ended it already.
		struct goroutine_key ck = {.tgid = k.tgid, .g = s.cs};
		if (bpf_map_delete_elem(&grpc_client_starts, &ck) != 0)
			return 0;
	}
	emit(k.tgid, &s, itab, data);
	return 0;
}

SEC("uprobe/grpc_client_finish")
int uprobe_grpc_client_finish(struct go_regs *ctx)
{
	// (*clientStream).finish(cs, err error): cs in arg 1, err's itab and
	// data in args 2 and 3.
	struct goroutine_key ck = {.tgid = current_tgid(), .g = GO_ARG1(ctx)};
	struct grpc_client_start *sp = bpf_map_lookup_elem(&grpc_client_starts, &ck);
	if (!sp)
		return 0;
	struct grpc_client_start s = *sp;
	if (bpf_map_delete_elem(&grpc_client_starts, &ck) != 0)
		return 0; // ended by another CPU meanwhile
	emit(ck.tgid, &s, GO_ARG2(ctx), GO_ARG3(ctx));
	return 0;
}
