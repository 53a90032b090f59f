//go:build ignore

// HTTP server requests served by net/http, timed from the handler's start to
// the server's own bookkeeping after it: two emulated probe hits per request.
//
//   start:  net/http.serverHandler.ServeHTTP          (every HTTP/1 and HTTP/2 request)
//   finish: net/http.(*response).finishRequest        (HTTP/1, handler returned)
//           net/http.(*http2responseWriter).handlerDone (HTTP/2, handler returned)
//   abort:  net/http.(*conn).serve.func1              (HTTP/1 connection's deferred recover:
//                                                      runs once per connection; a request still
//                                                      open here panicked, called Goexit or hijacked)
//           net/http.(*http2serverConn).runHandler.func1 (HTTP/2 stream's deferred func, which
//                                                      also calls handlerDone: it ends a request only
//                                                      while the goroutine unwinds a panic)
//   route:  the route template a router matched, read from the router's own
//           state on the request's goroutine after the handler ran and before
//           the request ends (one emulated CALL site per request):
//           gin      (*Engine).ServeHTTP's CALL sync.(*Pool).Put   (Context.fullPath)
//           chi      (*Mux).ServeHTTP's CALL sync.(*Pool).Put      (Context.RoutePatterns; v5 and v1)
//           echo     (*Echo).ServeHTTP's CALL sync.(*Pool).Put     (context.path; v4, and v5's
//                    (*Echo).serveHTTP.deferwrap1's)
//           gorilla  (*Router).ServeHTTP's CALL requestWithRoute   (Route's reverse template and variables;
//                    before the handler, on the matched route only)

#include "common.h"

#define HTTP_METHOD_MAX 16
#define HTTP_PATH_MAX 128
#define HTTP_PATTERN_MAX 128

// Event flags, compared with probes/http_server.go by probes/contract_test.go.
// An enum, and a pointer to it, so that the object's BTF carries the values.
enum http_server_flag {
	HTTP_FLAG_PANIC = 1,    // handler panicked or called runtime.Goexit
	HTTP_FLAG_HIJACKED = 2, // handler hijacked the connection
	HTTP_FLAG_STATUS = 4,   // status is known (written by the handler or implied 200)
	HTTP_FLAG_HTTP2 = 8,
	HTTP_FLAG_TLS = 16, // the request came over TLS (Request.TLS set)
};
const enum http_server_flag *unused_http_server_flag __attribute__((unused));

// Routers whose route templates the family reads: the event's router says
// which one wrote its pattern (0: the pattern is net/http's ServeMux's).
enum http_router {
	HTTP_ROUTER_GIN = 1,
	HTTP_ROUTER_CHI = 2,
	HTTP_ROUTER_ECHO = 3,
	HTTP_ROUTER_MUX = 4,
};
const enum http_router *unused_http_router __attribute__((unused));

// MUX_VARS_MAX bounds the variables of one gorilla/mux path template read.
#define MUX_VARS_MAX 8

// CHI_PATTERNS_MAX bounds the chi patterns joined into one route: one per
// nested router a request passed through.
#define CHI_PATTERNS_MAX 4

// Where the fields live in this process's binary: read from its DWARF or
// runtime type data by the agent ((*symbols.Binary).StructFields).
struct http_server_offsets {
	u64 resp_status;       // net/http.response.status
	u64 resp_wrote_header; // net/http.response.wroteHeader
	u64 resp_conn;         // net/http.response.conn
	u64 conn_hijacked;     // net/http.conn.hijackedv
	u64 req_method;        // net/http.Request.Method
	u64 req_url;           // net/http.Request.URL
	u64 req_proto_major;   // net/http.Request.ProtoMajor
	u64 req_proto_minor;   // net/http.Request.ProtoMinor
	u64 req_tls;           // net/http.Request.TLS
	u64 url_path;          // net/url.URL.Path
	u64 req_pattern;       // net/http.Request.Pattern (kind 1) or .pat (kind 2)
	u64 pattern_str;       // net/http.pattern.str
	u64 h2_rws;            // net/http.http2responseWriter.rws
	u64 h2_status;         // net/http.http2responseWriterState.status
	u64 h2_wrote_header;   // net/http.http2responseWriterState.wroteHeader
	u64 g_panic;           // runtime.g._panic: set while a panic or Goexit unwinds
	u64 gin_full_path;     // github.com/gin-gonic/gin.Context.fullPath
	u64 chi_patterns;      // github.com/go-chi/chi/v5.Context.RoutePatterns (or chi v1's)
	u64 echo_path;         // github.com/labstack/echo/v4.context.path (or echo/v5.Context.path)
	u64 mux_path;          // github.com/gorilla/mux.Route.routeConf + routeConf.regexp + routeRegexpGroup.path
	u64 mux_reverse;       // github.com/gorilla/mux.routeRegexp.reverse
	u64 mux_vars;          // github.com/gorilla/mux.routeRegexp.varsN
	// Windows read at once (see read_window): [off, off+len) of a struct,
	// the span from the first to the end of the last field read there,
	// computed by the agent from the proven offsets above (len 0: the
	// fields are too far apart, each is read alone).
	u64 resp_win_off;      // net/http.response: wroteHeader and status
	u64 resp_win_len;
	u64 req_win_off;       // net/http.Request: Method, URL, ProtoMajor, ProtoMinor, TLS, Pattern or pat
	u64 req_win_len;
	u64 h2_win_off;        // the HTTP/2 responseWriterState: wroteHeader and status
	u64 h2_win_len;
	u32 pattern_kind;      // 0: no ServeMux patterns (before Go 1.22)
	u32 routers;           // nonzero when a router's route probe is attached
};

struct http_start {
	u64 start_ns;
	u64 w;   // the ResponseWriter's data word
	u64 req; // *http.Request
};

struct http_server_event {
	struct event_header hdr;
	u16 status;
	u8 method_len;
	u8 router; // enum http_router that wrote pattern, 0 for ServeMux's
	u16 path_len;
	u16 pattern_len;
	u8 proto_major; // Request.ProtoMajor and ProtoMinor, 255 where larger
	u8 proto_minor;
	char method[HTTP_METHOD_MAX];
	u8 _pad[6];
	// path and pattern, 8-aligned and adjacent, first hold the windows
	// read from the program (HTTP_WINDOW_MAX bytes), until the strings
	// read from what they held are written over them.
	char path[HTTP_PATH_MAX];
	char pattern[HTTP_PATTERN_MAX];
};

// The room of the window: path and pattern (their layout is checked by
// probes/httpserver's TestWindowRoom).
#define HTTP_WINDOW_MAX (HTTP_PATH_MAX + HTTP_PATTERN_MAX)

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, u32);
	__type(value, struct http_server_offsets);
} http_server_config SEC(".maps");

// Requests in flight. A plain hash: an LRU map costs a third more per
// update, and would evict a request in flight silently when full; here a
// start that finds the map full is counted as lost. Entries whose finish
// never comes (a goroutine killed with its process, a handler that never
// returns) are swept by the agent after a bound.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct goroutine_key);
	__type(value, struct http_start);
} http_server_starts SEC(".maps");

// The route a router matched, recorded on the request's goroutine until the
// request ends. start_ns ties it to one request: a route left behind by a
// request that never ended is never given to the next one.
struct http_route {
	u64 start_ns;
	u16 len;
	u8 router;
	u8 _pad[5];
	char route[2 * HTTP_PATTERN_MAX]; // room for a bounded append past the end
};

// Routes recorded and not yet consumed: a route lives from its router's
// probe to the end of its request on the same goroutine. A plain hash, like
// the requests': a route that finds it full costs its request, counted as
// lost (exported without its route it would carry a wrong label), and the
// agent sweeps routes whose request never ended.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct goroutine_key);
	__type(value, struct http_route);
} http_server_routes SEC(".maps");

// A route is built here, not on the BPF stack (512 bytes).
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, struct http_route);
} http_route_scratch SEC(".maps");

// Dummy use so that bpf2go emits the Go types of the event and offsets.
const struct http_server_event *unused_http_server_event __attribute__((unused));

SEC("uprobe/http_server_start")
int uprobe_http_server_start(struct go_regs *ctx)
{
	struct goroutine_key k = {.tgid = current_tgid(), .g = GO_G(ctx)};
	// serverHandler.ServeHTTP(sh, rw ResponseWriter, req *Request): sh in
	// arg 1, rw's itab and data in args 2 and 3, req in arg 4.
	struct http_start s = {
		.start_ns = bpf_ktime_get_ns(),
		.w = GO_ARG3(ctx),
		.req = GO_ARG4(ctx),
	};
	if (bpf_map_update_elem(&http_server_starts, &k, &s, BPF_ANY) != 0)
		count_lost(FAMILY_HTTP_SERVER);
	return 0;
}

// fill writes the request's part of e: the times, the flags given, and
// what is read from the *http.Request of s.
static __always_inline void fill(struct http_server_event *e, struct goroutine_key *k,
				 struct http_start *s, const struct http_server_offsets *off,
				 u16 status, u16 flags)
{
	e->hdr.kind = FAMILY_HTTP_SERVER;
	e->hdr.pid = k->tgid;
	e->hdr.start_ns = s->start_ns;
	e->hdr.end_ns = bpf_ktime_get_ns();
	e->status = status;
	e->router = 0;
	u64 req = s->req;
	// Method's header, the URL pointer, ProtoMajor, ProtoMinor, TLS and
	// the ServeMux pattern (Pattern's header, or Go 1.22's pat pointer)
	// lie within the first 256 bytes of net/http.Request on every release
	// (0-248 since Go 1.23): one read of their window (inside the struct
	// by construction, see read_window) instead of six, into path and
	// pattern, which are written only after every field is taken from it.
	// Without a window (fields too far apart) or if that read fails, each
	// field is read alone, as before.
	struct go_string method = {};
	struct go_string pattern = {};
	u64 url = 0, major = 0, minor = 0, tls = 0, pat = 0;
	u64 base = off->req_win_off, len = off->req_win_len;
	char *win = e->path;
	if (read_window(win, HTTP_WINDOW_MAX, req + base, len)) {
		method = win_string(win, HTTP_WINDOW_MAX, len, off->req_method - base);
		url = win_u64(win, HTTP_WINDOW_MAX, len, off->req_url - base);
		major = win_u64(win, HTTP_WINDOW_MAX, len, off->req_proto_major - base);
		minor = win_u64(win, HTTP_WINDOW_MAX, len, off->req_proto_minor - base);
		tls = win_u64(win, HTTP_WINDOW_MAX, len, off->req_tls - base);
		if (off->pattern_kind == 1)
			pattern = win_string(win, HTTP_WINDOW_MAX, len, off->req_pattern - base);
		else if (off->pattern_kind == 2)
			pat = win_u64(win, HTTP_WINDOW_MAX, len, off->req_pattern - base);
	} else {
		bpf_probe_read_user(&method, sizeof(method), (void *)(req + off->req_method));
		url = read_u64(req + off->req_url);
		major = read_u64(req + off->req_proto_major);
		minor = read_u64(req + off->req_proto_minor);
		tls = read_u64(req + off->req_tls);
		if (off->pattern_kind == 1)
			bpf_probe_read_user(&pattern, sizeof(pattern), (void *)(req + off->req_pattern));
		else if (off->pattern_kind == 2)
			pat = read_u64(req + off->req_pattern);
	}
	e->proto_major = major > 255 ? 255 : (u8)major;
	e->proto_minor = minor > 255 ? 255 : (u8)minor;
	if (tls)
		flags |= HTTP_FLAG_TLS;
	e->hdr.flags = flags;
	e->method_len = copy_go_string(e->method, HTTP_METHOD_MAX, method);
	e->pattern_len = 0;
	if (off->pattern_kind == 1)
		e->pattern_len = copy_go_string(e->pattern, HTTP_PATTERN_MAX, pattern);
	else if (off->pattern_kind == 2 && pat)
		e->pattern_len = read_go_string(e->pattern, HTTP_PATTERN_MAX, pat + off->pattern_str);
	// A router's route, when one was recorded for this very request,
	// replaces the ServeMux pattern: it is the handler's own route.
	if (off->routers) {
		struct http_route *r = bpf_map_lookup_elem(&http_server_routes, k);
		if (r) {
			if (r->start_ns == s->start_ns && r->len > 0 && r->len < HTTP_PATTERN_MAX) {
				__builtin_memcpy(e->pattern, r->route, HTTP_PATTERN_MAX);
				e->pattern_len = r->len;
				e->router = r->router;
			}
			bpf_map_delete_elem(&http_server_routes, k);
		}
	}
	e->path_len = 0;
	if (e->pattern_len == 0 && url)
		e->path_len = read_go_string(e->path, HTTP_PATH_MAX, url + off->url_path);
}

static __always_inline void emit(struct goroutine_key *k, struct http_start *s,
				 const struct http_server_offsets *off, u16 status, u16 flags)
{
	void *ring;
	struct http_server_event *e = reserve(FAMILY_HTTP_SERVER, sizeof(*e), &ring);
	if (!e)
		return;
	fill(e, k, s, off, status, flags);
	submit(ring, e);
}

// uprobe_http_server_finish ends the request whose handler returned normally.
SEC("uprobe/http_server_finish")
int uprobe_http_server_finish(struct go_regs *ctx)
{
	struct goroutine_key k = {.tgid = current_tgid(), .g = GO_G(ctx)};
	struct http_start *sp = bpf_map_lookup_elem(&http_server_starts, &k);
	if (!sp)
		return 0;
	struct http_start s = *sp;
	bpf_map_delete_elem(&http_server_starts, &k);
	u64 w = GO_ARG1(ctx);
	if (s.w != w)
		return 0;
	const struct http_server_offsets *off = bpf_map_lookup_elem(&http_server_config, &k.tgid);
	if (!off)
		return 0;
	void *ring;
	struct http_server_event *e = reserve(FAMILY_HTTP_SERVER, sizeof(*e), &ring);
	if (!e)
		return 0;
	// response.wroteHeader and status (88 to 104 bytes apart on the
	// releases known) in one read of their window into the event's room
	// for it (fill writes over it afterwards), instead of two.
	u16 status = 200; // net/http writes 200 for a handler that wrote nothing
	u64 base = off->resp_win_off, len = off->resp_win_len;
	if (read_window(e->path, HTTP_WINDOW_MAX, w + base, len)) {
		if (win_u8(e->path, HTTP_WINDOW_MAX, len, off->resp_wrote_header - base))
			status = status_of(win_u64(e->path, HTTP_WINDOW_MAX, len, off->resp_status - base));
	} else {
		u8 wrote = 0;
		bpf_probe_read_user(&wrote, 1, (void *)(w + off->resp_wrote_header));
		if (wrote)
			status = read_status(w + off->resp_status);
	}
	fill(e, &k, &s, off, status, HTTP_FLAG_STATUS);
	submit(ring, e);
	return 0;
}

// uprobe_http_server_abort runs in the HTTP/1 connection's deferred recover:
// a start still recorded for the goroutine means its handler did not return.
SEC("uprobe/http_server_abort")
int uprobe_http_server_abort(struct go_regs *ctx)
{
	struct goroutine_key k = {.tgid = current_tgid(), .g = GO_G(ctx)};
	struct http_start *sp = bpf_map_lookup_elem(&http_server_starts, &k);
	if (!sp)
		return 0;
	struct http_start s = *sp;
	bpf_map_delete_elem(&http_server_starts, &k);
	const struct http_server_offsets *off = bpf_map_lookup_elem(&http_server_config, &k.tgid);
	if (!off)
		return 0;
	u64 w = s.w;
	u8 wrote = 0, hijacked = 0;
	u64 conn = read_u64(w + off->resp_conn);
	if (conn)
		bpf_probe_read_user(&hijacked, 1, (void *)(conn + off->conn_hijacked));
	bpf_probe_read_user(&wrote, 1, (void *)(w + off->resp_wrote_header));
	u16 status = 0, flags = hijacked ? HTTP_FLAG_HIJACKED : HTTP_FLAG_PANIC;
	if (wrote) {
		status = read_status(w + off->resp_status);
		flags |= HTTP_FLAG_STATUS;
	}
	emit(&k, &s, off, status, flags);
	return 0;
}

static __always_inline int finish_http2(struct go_regs *ctx, u16 flags)
{
	struct goroutine_key k = {.tgid = current_tgid(), .g = GO_G(ctx)};
	struct http_start *sp = bpf_map_lookup_elem(&http_server_starts, &k);
	if (!sp)
		return 0;
	const struct http_server_offsets *off = bpf_map_lookup_elem(&http_server_config, &k.tgid);
	if (!off)
		return 0;
	// The stream's deferred func runs on every path and calls handlerDone
	// itself when the handler returned: only a goroutine that is unwinding
	// a panic (or Goexit) ends its request there.
	if ((flags & HTTP_FLAG_PANIC) && read_u64(k.g + off->g_panic) == 0)
		return 0;
	struct http_start s = *sp;
	bpf_map_delete_elem(&http_server_starts, &k);
	u64 rws = read_u64(s.w + off->h2_rws);
	void *ring;
	struct http_server_event *e = reserve(FAMILY_HTTP_SERVER, sizeof(*e), &ring);
	if (!e)
		return 0;
	u8 wrote = 0;
	u16 status = 0;
	if (rws) {
		// The state's wroteHeader and status, side by side, in one read
		// into the event's window (fill writes over it afterwards).
		u64 base = off->h2_win_off, len = off->h2_win_len;
		if (read_window(e->path, HTTP_WINDOW_MAX, rws + base, len)) {
			wrote = win_u8(e->path, HTTP_WINDOW_MAX, len, off->h2_wrote_header - base);
			if (wrote)
				status = status_of(win_u64(e->path, HTTP_WINDOW_MAX, len, off->h2_status - base));
		} else {
			bpf_probe_read_user(&wrote, 1, (void *)(rws + off->h2_wrote_header));
			if (wrote)
				status = read_status(rws + off->h2_status);
		}
	}
	if (wrote) {
		flags |= HTTP_FLAG_STATUS;
	} else if (!(flags & HTTP_FLAG_PANIC)) {
		status = 200;
		flags |= HTTP_FLAG_STATUS;
	}
	fill(e, &k, &s, off, status, flags | HTTP_FLAG_HTTP2);
	submit(ring, e);
	return 0;
}

SEC("uprobe/http2_server_finish")
int uprobe_http2_server_finish(struct go_regs *ctx)
{
	return finish_http2(ctx, 0);
}

// The stream's deferred func: runs before handlerDone (which it calls) on
// the normal path, and alone when the handler panicked.
SEC("uprobe/http2_server_abort")
int uprobe_http2_server_abort(struct go_regs *ctx)
{
	return finish_http2(ctx, HTTP_FLAG_PANIC);
}

// append_string appends the Go string whose header sits at addr to r's
// route; 0 when it cannot be read or the route would not fit an event
// (a cut route would be a wrong label: the request keeps today's route).
static __always_inline int append_string(struct http_route *r, u64 addr)
{
	struct {
		u64 ptr;
		s64 len;
	} s;
	if (bpf_probe_read_user(&s, sizeof(s), (void *)addr) != 0)
		return 0;
	if (s.len < 0 || (s.len > 0 && s.ptr == 0))
		return 0;
	u64 at = r->len;
	u64 n = (u64)s.len;
	if (at + n >= HTTP_PATTERN_MAX)
		return 0;
	// Bounds the verifier sees (the compiler would drop them after the
	// check above): at + n stays inside route's 2 * HTTP_PATTERN_MAX.
	asm volatile("" : "+r"(at), "+r"(n));
	at &= HTTP_PATTERN_MAX - 1;
	n &= HTTP_PATTERN_MAX - 1;
	if (n > 0 && bpf_probe_read_user(r->route + at, n, (void *)s.ptr) != 0)
		return 0;
	r->len = at + n;
	return 1;
}

// append_nul appends a NUL byte to r's route (a separator); 0 when it
// would not fit an event.
static __always_inline int append_nul(struct http_route *r)
{
	u64 at = r->len;
	if (at + 1 >= HTTP_PATTERN_MAX)
		return 0;
	r->route[at & (HTTP_PATTERN_MAX - 1)] = 0;
	r->len = at + 1;
	return 1;
}

// record_route stores the route the router matched for the request running
// on this goroutine. obj is the router's per-request state (gin, chi, echo)
// or the matched route (gorilla/mux), read where the agent proved its
// fields' offsets (probes that cannot be proven are left out).
static __always_inline int record_route(struct go_regs *ctx, u8 router, u64 obj)
{
	struct goroutine_key k = {.tgid = current_tgid(), .g = GO_G(ctx)};
	struct http_start *sp = bpf_map_lookup_elem(&http_server_starts, &k);
	if (!sp || !obj)
		return 0;
	const struct http_server_offsets *off = bpf_map_lookup_elem(&http_server_config, &k.tgid);
	if (!off)
		return 0;
	u32 zero = 0;
	struct http_route *r = bpf_map_lookup_elem(&http_route_scratch, &zero);
	if (!r)
		return 0;
	r->start_ns = sp->start_ns;
	r->router = router;
	r->len = 0;
	int ok = 0;
	switch (router) {
	case HTTP_ROUTER_GIN:
		ok = append_string(r, obj + off->gin_full_path);
		break;
	case HTTP_ROUTER_ECHO:
		ok = append_string(r, obj + off->echo_path);
		break;
	case HTTP_ROUTER_MUX: {
		// The path's reverse template ("/users/%s") and its variables'
		// names, as "reverse\0name\0name": the decoder writes each name
		// in braces where its %s is. (The template itself also holds
		// each variable's regexp, too long for an event in real
		// programs.)
		u64 re = read_u64(obj + off->mux_path);
		if (!re || !append_string(r, re + off->mux_reverse))
			break;
		struct {
			u64 ptr;
			s64 len;
			s64 cap;
		} vars;
		if (bpf_probe_read_user(&vars, sizeof(vars), (void *)(re + off->mux_vars)) != 0)
			break;
		if (vars.len < 0 || vars.len > MUX_VARS_MAX || (vars.len > 0 && vars.ptr == 0))
			break;
		ok = 1;
		for (int i = 0; i < MUX_VARS_MAX; i++) {
			if (i >= vars.len)
				break;
			if (!append_nul(r) || !append_string(r, vars.ptr + 16 * i)) {
				ok = 0;
				break;
			}
		}
		break;
	}
	case HTTP_ROUTER_CHI: {
		// RoutePatterns: one pattern per router the request passed
		// through, joined as chi's RoutePattern joins them (the
		// decoder removes the "/*" between a mount and its sub-router).
		struct {
			u64 ptr;
			s64 len;
			s64 cap;
		} sl;
		if (bpf_probe_read_user(&sl, sizeof(sl), (void *)(obj + off->chi_patterns)) != 0)
			break;
		if (sl.len <= 0 || sl.len > CHI_PATTERNS_MAX || sl.ptr == 0)
			break;
		ok = 1;
		for (int i = 0; i < CHI_PATTERNS_MAX; i++) {
			if (i >= sl.len)
				break;
			if (!append_string(r, sl.ptr + 16 * i)) {
				ok = 0;
				break;
			}
		}
		break;
	}
	}
	// No route (a request that matched none: gin, chi and echo leave it
	// empty) keeps today's route, from the path.
	if (!ok || r->len == 0)
		return 0;
	if (bpf_map_update_elem(&http_server_routes, &k, r, BPF_ANY) != 0 &&
	    bpf_map_delete_elem(&http_server_starts, &k) == 0)
		count_lost(FAMILY_HTTP_SERVER);
	return 0;
}

// sync.(*Pool).Put(pool, x any): the router's context is x's data word.
SEC("uprobe/http_route_gin")
int uprobe_http_route_gin(struct go_regs *ctx)
{
	return record_route(ctx, HTTP_ROUTER_GIN, GO_ARG3(ctx));
}

SEC("uprobe/http_route_chi")
int uprobe_http_route_chi(struct go_regs *ctx)
{
	return record_route(ctx, HTTP_ROUTER_CHI, GO_ARG3(ctx));
}

SEC("uprobe/http_route_echo")
int uprobe_http_route_echo(struct go_regs *ctx)
{
	return record_route(ctx, HTTP_ROUTER_ECHO, GO_ARG3(ctx));
}

// gorilla/mux's requestWithRoute(r *http.Request, route *Route).
SEC("uprobe/http_route_mux")
int uprobe_http_route_mux(struct go_regs *ctx)
{
	return record_route(ctx, HTTP_ROUTER_MUX, GO_ARG2(ctx));
}
