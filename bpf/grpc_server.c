//go:build ignore

// gRPC calls served by grpc-go (google.golang.org/grpc), unary and
// streaming, timed from the start of the stream's handling to the status
// the server writes at its end: two emulated probe hits per call.
//
//   start:  google.golang.org/grpc.(*Server).handleStream
//           (every stream, on the goroutine that runs its handler)
//   finish: google.golang.org/grpc/internal/transport.(*http2Server).writeStatus
//           (grpc-go >= 1.69; (*http2Server).WriteStatus before): the
//           trailers of the call, written once by that goroutine after the
//           handler returned (or at once for an unknown method)
//   unanswered: google.golang.org/grpc.(*Server).processUnaryRPC, after its
//           call of status.FromError on the error of sendResponse (releases
//           that have processUnaryRPC: v1.50, v1.60): a unary call whose
//           answer failed with an error that carries no status (the
//           transport's ConnectionError: its stream reset and its
//           connection closed) ends there, and grpc-go writes no status

#include "common.h"

#define GRPC_METHOD_MAX 128

// The family's event kind: its own, outside enum family of common.h so
// that adding it changes no other family's objects (below FAMILY_MAX).
enum grpc_server_kind {
	FAMILY_GRPC_SERVER = 9,
};
const enum grpc_server_kind *unused_grpc_server_kind __attribute__((unused));

// Event flags, compared with probes/grpcserver by its contract test.
enum grpc_server_flag {
	GRPCS_FLAG_STATUS = 1,     // a *spb.Status was read (else the status is OK)
	GRPCS_FLAG_UNANSWERED = 2, // ended in processUnaryRPC without a status (code Unavailable)
};
const enum grpc_server_flag *unused_grpc_server_flag __attribute__((unused));

// Where the fields live in this process's binary (DWARF or proven type data).
struct grpc_server_offsets {
	u64 stream_method; // transport.ServerStream.Stream + transport.Stream.method (or Stream.method)
	u64 status_s;      // internal/status.Status.s
	u64 spb_code;      // genproto rpc/status.Status.Code
};

struct grpc_server_start {
	u64 start_ns;
	u64 stream; // the *transport.ServerStream (or *Stream) handleStream got
};

struct grpc_server_event {
	struct event_header hdr;
	u32 code;       // spb.Status.Code (with GRPCS_FLAG_STATUS)
	u16 method_len; // the method's full length: more than GRPC_METHOD_MAX means cut
	u16 _pad;
	u64 ret1; // return address of writeStatus' caller
	u64 ret2; // return address of that caller's caller (frame pointer chain)
	char method[GRPC_METHOD_MAX];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, u32);
	__type(value, struct grpc_server_offsets);
} grpc_server_config SEC(".maps");

// Calls in flight, by goroutine. A plain hash, not an LRU: a start that
// finds it full is counted as lost instead of evicting another call
// silently; entries whose end never came are swept by the agent.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct goroutine_key);
	__type(value, struct grpc_server_start);
} grpc_server_starts SEC(".maps");

const struct grpc_server_event *unused_grpc_server_event __attribute__((unused));

SEC("uprobe/grpc_server_start")
int uprobe_grpc_server_start(struct go_regs *ctx)
{
	struct goroutine_key k = {.tgid = current_tgid(), .g = GO_G(ctx)};
	// (*Server).handleStream(s, t ServerTransport, stream, ...): t's itab
	// and data in args 2 and 3, stream in arg 4.
	struct grpc_server_start s = {.start_ns = bpf_ktime_get_ns(), .stream = GO_ARG4(ctx)};
	if (bpf_map_update_elem(&grpc_server_starts, &k, &s, BPF_ANY) != 0)
		count_lost(FAMILY_GRPC_SERVER);
	return 0;
}

// emit writes the event of the call started at s, ended with code
// (GRPCS_FLAG_STATUS in flags) and the return addresses that tell who
// ended it.
static __always_inline void emit(u32 tgid, const struct grpc_server_start *s,
				 const struct grpc_server_offsets *off, u32 code, u16 flags,
				 u64 ret1, u64 ret2)
{
	void *ring;
	struct grpc_server_event *e = reserve(FAMILY_GRPC_SERVER, sizeof(*e), &ring);
	if (!e)
		return;
	e->hdr.kind = FAMILY_GRPC_SERVER;
	e->hdr.flags = flags;
	e->hdr.pid = tgid;
	e->hdr.start_ns = s->start_ns;
	e->hdr.end_ns = bpf_ktime_get_ns();
	e->code = code;
	// The method's header once: its bytes, and its full length.
	struct go_string m = {};
	bpf_probe_read_user(&m, sizeof(m), (void *)(s->stream + off->stream_method));
	e->method_len = copy_go_string(e->method, GRPC_METHOD_MAX, m);
	u64 full = m.len < 0 ? 0 : (u64)m.len;
	if (full > e->method_len)
		e->method_len = full > 0xffff ? 0xffff : (u16)full;
	e->_pad = 0;
	e->ret1 = ret1;
	e->ret2 = ret2;
	submit(ring, e);
}

SEC("uprobe/grpc_server_finish")
int uprobe_grpc_server_finish(struct go_regs *ctx)
{
	struct goroutine_key k = {.tgid = current_tgid(), .g = GO_G(ctx)};
	struct grpc_server_start *sp = bpf_map_lookup_elem(&grpc_server_starts, &k);
	if (!sp)
		return 0;
	// (*http2Server).writeStatus(t, s, st): the stream in arg 2 must be
	// the one this goroutine handles.
	if (sp->stream != GO_ARG2(ctx))
		return 0;
	struct grpc_server_start s = *sp;
	if (bpf_map_delete_elem(&grpc_server_starts, &k) != 0)
		return 0;
	const struct grpc_server_offsets *off = bpf_map_lookup_elem(&grpc_server_config, &k.tgid);
	if (!off)
		return 0;
	u32 code = 0;
	u16 flags = 0;
	u64 st = GO_ARG3(ctx);
	u64 spb = st ? read_u64(st + off->status_s) : 0;
	if (spb) {
		code = 0xffffffff;
		bpf_probe_read_user(&code, sizeof(code), (void *)(spb + off->spb_code));
		flags |= GRPCS_FLAG_STATUS;
	}
	// Who wrote the status: handleStream itself for an unknown service or
	// method, the handler's runner otherwise. At the function's entry the
	// return address is at SP and the caller's frame pointer in BP.
#if defined(__TARGET_ARCH_x86)
	u64 ret1 = read_u64(ctx->sp);
	u64 ret2 = ctx->bp ? read_u64(ctx->bp + 8) : 0;
#else
	// arm64: the return address is in LR; a Go caller saved its own
	// return address at 0(RSP) of its frame, which is SP here.
	u64 ret1 = ctx->regs[30];
	u64 ret2 = read_u64(ctx->sp);
#endif
	emit(k.tgid, &s, off, code, flags, ret1, ret2);
	return 0;
}

SEC("uprobe/grpc_server_unanswered")
int uprobe_grpc_server_unanswered(struct go_regs *ctx)
{
	// Right after status.FromError(err) returned (*Status, ok bool) on the
	// error of sendResponse: with ok, processUnaryRPC writes that status
	// (the finish program ends the call); without, the error is the
	// transport's ConnectionError (anything else makes grpc-go panic) and
	// no status is written: the call ends here, with the code otelgrpc
	// reports for it (toRPCErr: Unavailable).
	if (GO_ARG2(ctx) & 0xff)
		return 0;
	struct goroutine_key k = {.tgid = current_tgid(), .g = GO_G(ctx)};
	struct grpc_server_start *sp = bpf_map_lookup_elem(&grpc_server_starts, &k);
	if (!sp)
		return 0;
	struct grpc_server_start s = *sp;
	if (bpf_map_delete_elem(&grpc_server_starts, &k) != 0)
		return 0;
	const struct grpc_server_offsets *off = bpf_map_lookup_elem(&grpc_server_config, &k.tgid);
	if (!off)
		return 0;
	emit(k.tgid, &s, off, 14, GRPCS_FLAG_STATUS | GRPCS_FLAG_UNANSWERED, 0, 0);
	return 0;
}
