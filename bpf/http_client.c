//go:build ignore

// Outgoing HTTP requests made through net/http's Transport (http.Get,
// Client.Do, any RoundTripper built on *http.Transport), timed over
// (*Transport).roundTrip: from its start to its return, which comes when the
// response headers have arrived or the request failed.
//
//   start:  net/http.(*Transport).roundTrip entry (PUSHQ BP, or the emulated
//           stack-check JBE on Go 1.19/1.20: the start is idempotent)
//   finish: every RET of net/http.(*Transport).roundTrip (*Response in RAX,
//           error in RBX/RCX)

#include "common.h"
#include "go_error.h"

#define HTTPC_METHOD_MAX 16
#define HTTPC_SCHEME_MAX 8
#define HTTPC_HOST_MAX 264 // a DNS name (253) and ":65535"

// Event flags, compared with probes/http_client.go by probes/contract_test.go.
// An enum, and a pointer to it, so that the object's BTF carries the values.
enum http_client_flag {
	HTTPC_FLAG_RESPONSE = 1,
};
const enum http_client_flag *unused_http_client_flag __attribute__((unused));

struct http_client_offsets {
	u64 req_method;     // net/http.Request.Method
	u64 req_url;        // net/http.Request.URL
	u64 url_scheme;     // net/url.URL.Scheme
	u64 url_host;       // net/url.URL.Host
	u64 resp_status;    // net/http.Response.StatusCode
	u64 resp_proto_major; // net/http.Response.ProtoMajor
	u64 resp_proto_minor; // net/http.Response.ProtoMinor
	u64 op_err_err;     // net.OpError.Err
	u64 syscall_err_err; // os.SyscallError.Err
	// Windows read at once (see read_window in common.h), computed by the
	// agent from the proven offsets above (len 0: each field alone).
	u64 resp_win_off;   // net/http.Response: StatusCode, ProtoMajor, ProtoMinor
	u64 resp_win_len;
	u64 url_win_off;    // net/url.URL: Scheme, Host
	u64 url_win_len;
};

struct http_client_start {
	u64 start_ns;
	u64 req;
};

struct http_client_event {
	struct event_header hdr;
	struct go_error err;
	u16 status;
	u8 method_len;
	u8 scheme_len;
	u16 host_len;   // the host's full length: more than HTTPC_HOST_MAX means cut
	u8 proto_major; // Response.ProtoMajor and ProtoMinor (with a response), 255 where larger
	u8 proto_minor;
	char method[HTTPC_METHOD_MAX];
	// scheme and host, 8-aligned and adjacent, first hold the windows read
	// from the program (HTTPC_WINDOW_MAX bytes), until the strings read
	// from what they held are written over them (checked by
	// probes/httpclient's TestWindowRoom).
	char scheme[HTTPC_SCHEME_MAX];
	char host[HTTPC_HOST_MAX];
};

#define HTTPC_WINDOW_MAX (HTTPC_SCHEME_MAX + HTTPC_HOST_MAX)

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, u32);
	__type(value, struct http_client_offsets);
} http_client_config SEC(".maps");

// Requests in flight: a plain hash, cheaper per update than an LRU map and
// never evicting a request in flight silently; a start that finds it full
// is counted as lost, and the agent sweeps starts whose end never came.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct goroutine_key);
	__type(value, struct http_client_start);
} http_client_starts SEC(".maps");

const struct http_client_event *unused_http_client_event __attribute__((unused));

SEC("uprobe/http_client_start")
int uprobe_http_client_start(struct go_regs *ctx)
{
	struct goroutine_key k = {.tgid = current_tgid(), .g = GO_G(ctx)};
	// (*Transport).roundTrip(t, req): t in arg 1, req in arg 2.
	struct http_client_start s = {.start_ns = bpf_ktime_get_ns(), .req = GO_ARG2(ctx)};
	if (bpf_map_update_elem(&http_client_starts, &k, &s, BPF_ANY) != 0)
		count_lost(FAMILY_HTTP_CLIENT);
	return 0;
}

SEC("uprobe/http_client_finish")
int uprobe_http_client_finish(struct go_regs *ctx)
{
	struct goroutine_key k = {.tgid = current_tgid(), .g = GO_G(ctx)};
	struct http_client_start *sp = bpf_map_lookup_elem(&http_client_starts, &k);
	if (!sp)
		return 0;
	struct http_client_start s = *sp;
	bpf_map_delete_elem(&http_client_starts, &k);
	const struct http_client_offsets *off = bpf_map_lookup_elem(&http_client_config, &k.tgid);
	if (!off)
		return 0;
	void *ring;
	struct http_client_event *e = reserve(FAMILY_HTTP_CLIENT, sizeof(*e), &ring);
	if (!e)
		return 0;
	e->hdr.kind = FAMILY_HTTP_CLIENT;
	e->hdr.flags = 0;
	e->hdr.pid = k.tgid;
	e->hdr.start_ns = s.start_ns;
	e->hdr.end_ns = bpf_ktime_get_ns();
	// Results: *Response in arg 1, error (itab, data) in args 2 and 3.
	u64 resp = GO_ARG1(ctx);
	e->status = 0;
	e->proto_major = 0;
	e->proto_minor = 0;
	char *win = e->scheme;
	if (resp) {
		// StatusCode, ProtoMajor and ProtoMinor (40 bytes of
		// net/http.Response) in one read of their window instead of
		// three.
		u64 major = 0, minor = 0;
		u64 base = off->resp_win_off, len = off->resp_win_len;
		if (read_window(win, HTTPC_WINDOW_MAX, resp + base, len)) {
			e->status = status_of(win_u64(win, HTTPC_WINDOW_MAX, len, off->resp_status - base));
			major = win_u64(win, HTTPC_WINDOW_MAX, len, off->resp_proto_major - base);
			minor = win_u64(win, HTTPC_WINDOW_MAX, len, off->resp_proto_minor - base);
		} else {
			e->status = read_status(resp + off->resp_status);
			major = read_u64(resp + off->resp_proto_major);
			minor = read_u64(resp + off->resp_proto_minor);
		}
		e->proto_major = major > 255 ? 255 : (u8)major;
		e->proto_minor = minor > 255 ? 255 : (u8)minor;
		e->hdr.flags |= HTTPC_FLAG_RESPONSE;
	}
	capture_go_error(&e->err, GO_ARG2(ctx), GO_ARG3(ctx), off->op_err_err, off->syscall_err_err);
	// Method's header and the URL pointer beside it (the first two fields
	// of net/http.Request in every Go release; checked at run time) in one
	// read: each read from the program costs ~45 ns.
	struct {
		struct go_string method;
		u64 url;
	} rq = {};
	if (off->req_url == off->req_method + sizeof(struct go_string)) {
		bpf_probe_read_user(&rq, sizeof(rq), (void *)(s.req + off->req_method));
	} else {
		bpf_probe_read_user(&rq.method, sizeof(rq.method), (void *)(s.req + off->req_method));
		rq.url = read_u64(s.req + off->req_url);
	}
	e->method_len = copy_go_string(e->method, HTTPC_METHOD_MAX, rq.method);
	e->scheme_len = 0;
	e->host_len = 0;
	u64 url = rq.url;
	if (url) {
		// Scheme's and Host's headers (56 bytes of net/url.URL) in one
		// read of their window, then their bytes over it.
		struct go_string scheme = {}, host = {};
		u64 base = off->url_win_off, len = off->url_win_len;
		if (read_window(win, HTTPC_WINDOW_MAX, url + base, len)) {
			scheme = win_string(win, HTTPC_WINDOW_MAX, len, off->url_scheme - base);
			host = win_string(win, HTTPC_WINDOW_MAX, len, off->url_host - base);
		} else {
			bpf_probe_read_user(&scheme, sizeof(scheme), (void *)(url + off->url_scheme));
			bpf_probe_read_user(&host, sizeof(host), (void *)(url + off->url_host));
		}
		e->scheme_len = copy_go_string(e->scheme, HTTPC_SCHEME_MAX, scheme);
		e->host_len = copy_go_string(e->host, HTTPC_HOST_MAX, host);
		// The host's full length: more than was copied says it was cut.
		u64 full = host.len < 0 ? 0 : (u64)host.len;
		if (full > e->host_len)
			e->host_len = full > 0xffff ? 0xffff : (u16)full;
	}
	submit(ring, e);
	return 0;
}
