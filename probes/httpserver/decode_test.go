package httpserver

import (
	"strings"
	"testing"
	"time"

	"github.com/blindspot-dev/blindspot/aggregator"
	"github.com/blindspot-dev/blindspot/probes"
	"github.com/blindspot-dev/blindspot/probes/internal/decodetest"
	"github.com/blindspot-dev/blindspot/probes/internal/eventbytes"
)

func raw[T any](ev *T) []byte             { return eventbytes.Raw(ev) }
func setChars(dst []int8, s string) uint8 { return eventbytes.SetChars(dst, s) }

type decoderRig = decodetest.Rig

func newDecoderRig(t testing.TB) *decoderRig {
	t.Helper()
	return decodetest.NewRig(Metrics(), func(agg *aggregator.Aggregator) *probes.Family { return Family() })
}

// A plausible event, changed by f.
func serverEvent(f func(*bpfHttpServerEvent)) []byte {
	var ev bpfHttpServerEvent
	ev.Hdr.Kind, ev.Hdr.Flags, ev.Hdr.Pid, ev.Hdr.StartNs, ev.Hdr.EndNs = kindHTTPServer, httpFlagStatus, 42, 1000000, 3000000
	ev.Status = 200
	ev.ProtoMajor, ev.ProtoMinor = 1, 1
	ev.MethodLen = setChars(ev.Method[:], "GET")
	ev.PathLen = uint16(setChars(ev.Path[:], "/items/42"))
	if f != nil {
		f(&ev)
	}
	return raw(&ev)
}

// Crafted events with an implausible value, as a misread program yields
// them, are refused by the decoder under the right reason, and nothing of
// them reaches the shard.
func TestDecodeRefusesImplausibleEvents(t *testing.T) {
	r := newDecoderRig(t)
	longBadPath := "/" + strings.Repeat("a", 60) + "\xff" + strings.Repeat("b", 239) // 300 bytes
	cases := decodetest.Cases{
		// HTTP server.
		{"server status 257", serverEvent(func(e *bpfHttpServerEvent) { e.Status = 257 }), probes.InvalidStatus, "status"},
		{"server status 12240", serverEvent(func(e *bpfHttpServerEvent) { e.Status = 12240 }), probes.InvalidStatus, "status"},
		{"server status 0x7fff", serverEvent(func(e *bpfHttpServerEvent) { e.Status = 0x7fff }), probes.InvalidStatus, "status"},
		{"server status 0 written", serverEvent(func(e *bpfHttpServerEvent) { e.Status = 0 }), probes.InvalidStatus, "status"},
		{"server status 999", serverEvent(func(e *bpfHttpServerEvent) { e.Status = 999 }), probes.InvalidStatus, "status"},
		{"server method NUL", serverEvent(func(e *bpfHttpServerEvent) { e.MethodLen = setChars(e.Method[:], "G\x00T") }), probes.InvalidMethod, "method"},
		{"server method empty", serverEvent(func(e *bpfHttpServerEvent) { e.MethodLen = 0 }), probes.InvalidMethod, "method"},
		{"server method space", serverEvent(func(e *bpfHttpServerEvent) { e.MethodLen = setChars(e.Method[:], "G T") }), probes.InvalidMethod, "method"},
		{"server HTTP/2 method space", serverEvent(func(e *bpfHttpServerEvent) {
			e.Hdr.Flags |= httpFlagHTTP2
			e.ProtoMajor, e.ProtoMinor = 2, 0
			e.MethodLen = setChars(e.Method[:], "G T")
		}), probes.InvalidPeerMethod, "method"},
		{"server version 0.0 (unwritten)", serverEvent(func(e *bpfHttpServerEvent) { e.ProtoMajor, e.ProtoMinor = 0, 0 }), probes.InvalidProto, "proto"},
		{"server version 1.10", serverEvent(func(e *bpfHttpServerEvent) { e.ProtoMinor = 10 }), probes.InvalidProto, "proto"},
		{"server version 3.0", serverEvent(func(e *bpfHttpServerEvent) { e.ProtoMajor, e.ProtoMinor = 3, 0 }), probes.InvalidProto, "proto"},
		{"server version 255 (capped pointer bits)", serverEvent(func(e *bpfHttpServerEvent) { e.ProtoMajor = 255 }), probes.InvalidProto, "proto"},
		{"server HTTP/2 at 1.1", serverEvent(func(e *bpfHttpServerEvent) { e.Hdr.Flags |= httpFlagHTTP2 }), probes.InvalidProto, "proto"},
		{"server 300-byte path, invalid UTF-8", serverEvent(func(e *bpfHttpServerEvent) {
			setChars(e.Path[:], longBadPath)
			e.PathLen = uint16(len(longBadPath))
		}), probes.InvalidPath, "path"},
		{"server path with newline", serverEvent(func(e *bpfHttpServerEvent) { e.PathLen = uint16(setChars(e.Path[:], "/a\nb")) }), probes.InvalidPath, "path"},
		{"server pattern invalid UTF-8", serverEvent(func(e *bpfHttpServerEvent) {
			e.PatternLen = uint16(setChars(e.Pattern[:], "GET /\xc3\x28"))
		}), probes.InvalidUTF8, "utf8"},
		{"server unknown router", serverEvent(func(e *bpfHttpServerEvent) {
			e.Router = 7
			e.PatternLen = uint16(setChars(e.Pattern[:], "/users/:id"))
		}), probes.Malformed, ""},
		{"server router without a route", serverEvent(func(e *bpfHttpServerEvent) { e.Router = httpRouterGin }), probes.Malformed, ""},
		{"server router route invalid UTF-8", serverEvent(func(e *bpfHttpServerEvent) {
			e.Router = httpRouterChi
			e.PatternLen = uint16(setChars(e.Pattern[:], "/\xc3\x28/{id}"))
		}), probes.InvalidUTF8, "utf8"},
		{"server end before start", serverEvent(func(e *bpfHttpServerEvent) { e.Hdr.StartNs, e.Hdr.EndNs = 3000000, 1000000 }), probes.InvalidDuration, "duration"},
		{"server a day long", serverEvent(func(e *bpfHttpServerEvent) { e.Hdr.EndNs = e.Hdr.StartNs + uint64(25*time.Hour) }), probes.InvalidDuration, "duration"},
	}
	r.Refuses(t, cases)
}

// What a correctly read program sends is still decoded.
func TestDecodeAcceptsPlausibleEdges(t *testing.T) {
	r := newDecoderRig(t)
	cut := strings.Repeat("é", 64) // 128 bytes: the path buffer, full
	for _, c := range []struct {
		name string
		raw  []byte
	}{
		{"server lower-case method", serverEvent(func(e *bpfHttpServerEvent) { e.MethodLen = setChars(e.Method[:], "get") })},
		{"server status 0 on a hijacked connection", serverEvent(func(e *bpfHttpServerEvent) { e.Hdr.Flags, e.Status = httpFlagHijacked, 0 })},
		{"server panic before a status", serverEvent(func(e *bpfHttpServerEvent) { e.Hdr.Flags, e.Status = httpFlagPanic, 0 })},
		{"server path cut in a rune", serverEvent(func(e *bpfHttpServerEvent) {
			setChars(e.Path[:], "/"+cut)
			e.PathLen = 400
		})},
		{"server bad path behind a pattern", serverEvent(func(e *bpfHttpServerEvent) {
			e.PathLen = uint16(setChars(e.Path[:], "/\xff"))
			e.PatternLen = uint16(setChars(e.Pattern[:], "GET /{x}"))
		})},
	} {
		if v := r.Decode(r.Sh, r.TID, c.raw); v != probes.Decoded {
			t.Errorf("%s: verdict %d, want decoded", c.name, v)
		}
	}
	if got := r.Observed(); got["http_server_request_duration_seconds"] != 5 {
		t.Errorf("http_server_request_duration_seconds: %d observations, want 5 (all: %v)", got["http_server_request_duration_seconds"], got)
	}
	r.LabelsValid(t)
}

// The decoder folds an event into a shard without allocating once its
// labels have been seen, and refuses an implausible one without allocating
// either: the reader's hot path.
func TestDecodeDoesNotAllocate(t *testing.T) {
	r := newDecoderRig(t)
	var srv bpfHttpServerEvent
	srv.Hdr.Kind, srv.Hdr.Flags, srv.Hdr.Pid, srv.Hdr.EndNs = kindHTTPServer, httpFlagStatus, 42, 1500000
	srv.Status = 200
	srv.ProtoMajor, srv.ProtoMinor = 1, 1
	srv.MethodLen = setChars(srv.Method[:], "GET")
	srv.PathLen = uint16(setChars(srv.Path[:], "/items/42"))
	srv.PatternLen = uint16(setChars(srv.Pattern[:], "GET /items/{id}"))
	badSrv := srv
	badSrv.Status = 257
	for _, c := range []struct {
		name string
		raw  []byte
		want probes.Verdict
	}{
		{"http_server", raw(&srv), probes.Decoded},
		{"http_server invalid", raw(&badSrv), probes.InvalidStatus},
	} {
		if v := r.Decode(r.Sh, r.TID, c.raw); v != c.want {
			t.Fatalf("%s: verdict %d, want %d", c.name, v, c.want)
		}
		if allocs := testing.AllocsPerRun(200, func() { r.Decode(r.Sh, r.TID, c.raw) }); allocs != 0 {
			t.Errorf("%s: %v allocations per event, want 0", c.name, allocs)
		}
	}
	var n uint64
	for _, p := range r.Agg.Snapshot() {
		n += p.Count
		if p.Metric == httpServerDuration && (p.Labels[0] != "GET" || p.Labels[1] != "200" || p.Labels[2] != "/items/{id}") {
			t.Errorf("server labels %v", p.Labels)
		}
	}
	// The valid event was decoded once, then 201 times in AllocsPerRun (a
	// warm-up and 200 measured runs); the invalid one never.
	if want := uint64(1 + 201); n != want {
		t.Errorf("%d observations, want %d", n, want)
	}
}

// url_scheme is the connection's (https where net/http set Request.TLS)
// and network_protocol_version the request's: 1.0 and 1.1 as read, 2 for
// HTTP/2 and for a "PRI * HTTP/2.0" request on an HTTP/1 connection.
func TestDecodeSchemeAndVersion(t *testing.T) {
	r := newDecoderRig(t)
	for _, f := range []func(*bpfHttpServerEvent){
		func(e *bpfHttpServerEvent) { e.ProtoMinor = 0 },
		nil,
		nil,
		func(e *bpfHttpServerEvent) { e.Hdr.Flags |= httpFlagTLS },
		func(e *bpfHttpServerEvent) {
			e.Hdr.Flags |= httpFlagTLS | httpFlagHTTP2
			e.ProtoMajor, e.ProtoMinor = 2, 0
		},
		func(e *bpfHttpServerEvent) { e.Hdr.Flags |= httpFlagHTTP2; e.ProtoMajor, e.ProtoMinor = 2, 0 },
		func(e *bpfHttpServerEvent) { e.ProtoMajor, e.ProtoMinor = 2, 0 },
	} {
		if v := r.Decode(r.Sh, r.TID, serverEvent(f)); v != probes.Decoded {
			t.Fatalf("verdict %d, want decoded", v)
		}
	}
	got := map[string]uint64{}
	for _, p := range r.Agg.Snapshot() {
		got[p.Labels[4]+" "+p.Labels[5]] += p.Count
	}
	want := map[string]uint64{"http 1.0": 1, "http 1.1": 2, "https 1.1": 1, "https 2": 1, "http 2": 2}
	if len(got) != len(want) {
		t.Errorf("series %v, want %v", got, want)
	}
	for k, n := range want {
		if got[k] != n {
			t.Errorf("%s: %d, want %d (all: %v)", k, got[k], n, got)
		}
	}
	if l := httpServerDuration.Labels; l[4] != "url_scheme" || l[5] != "network_protocol_version" {
		t.Errorf("labels %v", l)
	}
}

// A route a router recorded is the request's http_route, in ServeMux
// syntax whatever the router's; without one the path's route stays; the
// routes of a service stay bounded (http.route_limit).
func TestDecodeRouterRoutes(t *testing.T) {
	r := newDecoderRig(t)
	for _, c := range []struct {
		router uint8
		route  string
		want   string
	}{
		{httpRouterGin, "/users/:id", "/users/{id}"},
		{httpRouterGin, "/files/*path", "/files/{path...}"},
		{httpRouterEcho, "/users/:id", "/users/{id}"},
		{httpRouterChi, "/api/*/items/{item}", "/api/items/{item}"},
		{httpRouterMux, "/orders/%s\x00order", "/orders/{order}"},
		{httpRouterMux, "/v2/%s/manifests/%s\x00name\x00reference", "/v2/{name}/manifests/{reference}"},
		{httpRouterMux, "/files/", "/files/"},
		{0, "", "/items/{id}"}, // no route recorded: the path, folded
	} {
		raw := serverEvent(func(e *bpfHttpServerEvent) {
			e.PathLen = uint16(setChars(e.Path[:], "/items/42"))
			e.PatternLen = uint16(setChars(e.Pattern[:], c.route))
			e.Router = c.router
		})
		if v := r.Decode(r.Sh, r.TID, raw); v != probes.Decoded {
			t.Fatalf("%q: verdict %d, want decoded", c.route, v)
		}
		if allocs := testing.AllocsPerRun(50, func() { r.Decode(r.Sh, r.TID, raw) }); allocs != 0 {
			t.Errorf("%q: %v allocations per event, want 0", c.route, allocs)
		}
		found := false
		for _, p := range r.Agg.Snapshot() {
			found = found || p.Labels[2] == c.want
		}
		if !found {
			t.Errorf("router %d route %q: no series with http_route %q", c.router, c.route, c.want)
		}
	}
}

// FuzzDecode: arbitrary ring events never panic the decoder nor make it
// allocate beyond a bound.
func FuzzDecode(f *testing.F) {
	newDecoderRig(f).Fuzz(f, serverEvent(nil))
}

// benchEvents are requests of a few shapes, taken in turn: ServeMux
// patterns, raw paths folded into one route, a 5xx, HTTP/2 over TLS.
func benchEvents() [][]byte {
	var out [][]byte
	for i, c := range []struct {
		method, pattern, path string
		status                uint16
		flags                 uint16
	}{
		{"GET", "GET /api/items/{id}", "/api/items/7", 200, 0},
		{"POST", "POST /api/items", "/api/items", 201, 0},
		{"GET", "", "/users/42", 404, 0},
		{"GET", "", "/users/43", 404, 0},
		{"GET", "GET /api/items/{id}", "/api/items/9", 500, 0},
		{"DELETE", "DELETE /api/items/{id}", "/api/items/7", 204, 0},
		{"GET", "", "/healthz", 200, 0},
		{"PUT", "PUT /api/items/{id}", "/api/items/7", 200, httpFlagTLS | httpFlagHTTP2},
	} {
		out = append(out, serverEvent(func(e *bpfHttpServerEvent) {
			e.Hdr.Flags |= c.flags
			e.Hdr.EndNs = e.Hdr.StartNs + 1000 + uint64(i)*1_234_567
			e.Status = c.status
			e.MethodLen = setChars(e.Method[:], c.method)
			e.PatternLen = uint16(setChars(e.Pattern[:], c.pattern))
			e.PathLen = uint16(setChars(e.Path[:], c.path))
			if c.flags&httpFlagHTTP2 != 0 {
				e.ProtoMajor, e.ProtoMinor = 2, 0
			}
		}))
	}
	return out
}

// BenchmarkDecode is the decoder's and the aggregator's share of one event
// on the steady path (labels and series seen before): ns/op and allocs/op.
func BenchmarkDecode(b *testing.B) {
	r := newDecoderRig(b)
	evs := benchEvents()
	r.Benchmark(b, evs)
}

// What a decoded event's memo skips (its labels) is never what decides a
// later event's verdict: an event that differs in any checked value, or
// whose duration is implausible, is refused as if nothing were memoised;
// only the valid ones are counted.
func TestMemoKeepsVerdicts(t *testing.T) {
	r := newDecoderRig(t)
	good := serverEvent(func(e *bpfHttpServerEvent) { e.PatternLen = uint16(setChars(e.Pattern[:], "GET /items/{id}")) })
	for i := 0; i < 3; i++ {
		if v := r.Decode(r.Sh, r.TID, good); v != probes.Decoded {
			t.Fatalf("verdict %d, want decoded", v)
		}
	}
	for _, c := range []struct {
		name string
		f    func(*bpfHttpServerEvent)
		want probes.Verdict
	}{
		{"end before start", func(e *bpfHttpServerEvent) { e.Hdr.StartNs, e.Hdr.EndNs = 3000000, 1000000 }, probes.InvalidDuration},
		{"status 257", func(e *bpfHttpServerEvent) { e.Status = 257 }, probes.InvalidStatus},
		{"method with a space", func(e *bpfHttpServerEvent) { e.MethodLen = setChars(e.Method[:], "G T") }, probes.InvalidMethod},
		{"pattern not UTF-8", func(e *bpfHttpServerEvent) { e.PatternLen = uint16(setChars(e.Pattern[:], "GET /items/{id}\xff")) }, probes.InvalidUTF8},
		{"version 1.10", func(e *bpfHttpServerEvent) { e.ProtoMinor = 10 }, probes.InvalidProto},
	} {
		ev := serverEvent(func(e *bpfHttpServerEvent) {
			e.PatternLen = uint16(setChars(e.Pattern[:], "GET /items/{id}"))
			c.f(e)
		})
		for i := 0; i < 2; i++ {
			if v := r.Decode(r.Sh, r.TID, ev); v != c.want {
				t.Errorf("%s: verdict %d, want %d", c.name, v, c.want)
			}
		}
	}
	if got := r.Observed()[httpServerDuration.Name]; got != 3 {
		t.Errorf("%d observations, want the 3 valid ones", got)
	}
}
