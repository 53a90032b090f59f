// Package httpserver is the net/http server's probe family: which
// functions it probes (Probes), the struct fields its BPF programs read
// (Structs, offsets from symbols), how its events decode into
// http_server_request_duration_seconds, and its BPF objects
// (bpf/http_server.c, generated into bpf_*_bpfel.go).
package httpserver

import (
	"fmt"
	"unsafe"

	"github.com/blindspot-dev/blindspot/aggregator"
	"github.com/blindspot-dev/blindspot/probes"
	"github.com/blindspot-dev/blindspot/probes/label"
	"github.com/blindspot-dev/blindspot/symbols"
)

// kindHTTPServer is the kind of the family's events: FAMILY_HTTP_SERVER of
// bpf/common.h (compared with it by TestConstantsMatchC).
const kindHTTPServer = 1

// Flags of http_server_event: HTTP_FLAG_* of bpf/http_server.c (compared
// with it by TestConstantsMatchC).
const (
	httpFlagPanic    = 1
	httpFlagHijacked = 2
	httpFlagStatus   = 4
	httpFlagHTTP2    = 8
	httpFlagTLS      = 16
)

var httpServerDuration = &aggregator.Metric{
	Name:     "http_server_request_duration_seconds",
	OTelName: "http.server.request.duration",
	Help:     "Duration of HTTP server requests.",
	Unit:     "s",
	Kind:     aggregator.Histogram,
	Labels:   []string{"http_request_method", "http_response_status_code", "http_route", "error_type", "url_scheme", "network_protocol_version"},
	Buckets:  aggregator.DurationBuckets,
}

// The HTTP server is timed from serverHandler.ServeHTTP, which every
// net/http request passes through, to the bookkeeping net/http does right
// after the handler returns. Both are probed at an instruction the kernel
// emulates, and no return site is needed: two cheap hits per request (one
// more, also emulated, where a router's route is read: routers.go).
//
// Every program is idempotent: a start hit twice rewrites the same start, an
// end hit twice finds its start gone the second time.
var Probes = []probes.Probe{
	{Function: "net/http.serverHandler.ServeHTTP", Program: "uprobe_http_server_start", Idempotent: true},
	{Function: "net/http.(*response).finishRequest", Program: "uprobe_http_server_finish", Idempotent: true},
	{Function: "net/http.(*conn).serve.func1", Program: "uprobe_http_server_abort", Idempotent: true},
	// HTTP/2: net/http's bundled copy of x/net/http2 up to Go 1.26, the
	// package net/http/internal/http2 since Go 1.27. A binary has one.
	{Function: h2Bundled.handlerDone, Program: "uprobe_http2_server_finish", Optional: true, Idempotent: true},
	{Function: h2Bundled.runHandler, Program: "uprobe_http2_server_abort", Optional: true, Idempotent: true},
	{Function: h2Internal.handlerDone, Program: "uprobe_http2_server_finish", Optional: true, Idempotent: true},
	{Function: h2Internal.runHandler, Program: "uprobe_http2_server_abort", Optional: true, Idempotent: true},
}

// probeList is every probe of the family: net/http's, then the routers'
// (routers.go), each optional.
var probeList = append(append([]probes.Probe(nil), Probes...), routerProbes()...)

// Metrics returns the family's metrics, for the aggregator.
func Metrics() []*aggregator.Metric {
	return []*aggregator.Metric{httpServerDuration}
}

// Structs are the struct fields the family reads, for the offset table of
// Go releases (probes/internal/gentable) where a binary has neither DWARF
// nor type data for them.
var Structs = []symbols.StructSpec{
	{Type: "net/http.response", Fields: []string{"conn", "req", "status", "wroteHeader", "handlerDone"}},
	{Type: "net/http.Request", Fields: []string{"Method", "URL", "Host", "Pattern", "pat", "ProtoMajor", "ProtoMinor", "TLS"}},
	{Type: "net/url.URL", Fields: []string{"Scheme", "Host", "Path"}},
	{Type: "net/http.pattern", Fields: []string{"str"}},
	{Type: "net/http.conn", Fields: []string{"hijackedv"}},
	// HTTP/2 server (the bundled copy of golang.org/x/net/http2 up to Go
	// 1.26; Go 1.27 moved it to net/http/internal/http2).
	{Type: "net/http.http2responseWriter", Fields: []string{"rws"}},
	{Type: "net/http.http2responseWriterState", Fields: []string{"status", "wroteHeader"}},
	{Type: "net/http/internal/http2.responseWriter", Fields: []string{"rws"}},
	{Type: "net/http/internal/http2.responseWriterState", Fields: []string{"status", "wroteHeader"}},
	{Type: "runtime.g", Fields: []string{"goid", "atomicstatus", "_panic"}},
}

// Family is the net/http server family.
func Family() *probes.Family {
	return &probes.Family{
		Name:      "http_server",
		Kind:      kindHTTPServer,
		Anchor:    "net/http.serverHandler.ServeHTTP",
		Probes:    probeList,
		Spec:      loadBpf,
		ConfigMap: "http_server_config",
		StartMap:  "http_server_starts",
		// Routes recorded by a router for a request in flight.
		InFlightMaps: []string{"http_server_routes"},
		Configure:    httpServerOffsets,
		LeaveOut:     httpServerLeaveOut,
		Decode:       decodeHTTPServer,
		Invalid:      []string{"status", "method", "utf8", "path", "duration", "proto"},
	}
}

// httpServerOffsets reads where the fields the BPF programs read live in
// this binary.
func httpServerOffsets(b *symbols.Binary) (any, error) {
	var o bpfHttpServerOffsets
	resp, _, err := b.StructFields("net/http.response", "conn", "req", "status", "wroteHeader", "handlerDone")
	if err != nil {
		return nil, err
	}
	o.RespStatus, o.RespWroteHeader, o.RespConn = resp["status"], resp["wroteHeader"], resp["conn"]
	conn, _, err := b.StructFields("net/http.conn", "hijackedv")
	if err != nil {
		return nil, err
	}
	o.ConnHijacked = conn["hijackedv"]
	req, _, err := b.StructFields("net/http.Request", "Method", "URL", "Host", "ProtoMajor", "ProtoMinor", "TLS")
	if err != nil {
		return nil, err
	}
	o.ReqMethod, o.ReqUrl = req["Method"], req["URL"]
	o.ReqProtoMajor, o.ReqProtoMinor, o.ReqTls = req["ProtoMajor"], req["ProtoMinor"], req["TLS"]
	u, _, err := b.StructFields("net/url.URL", "Scheme", "Host", "Path")
	if err != nil {
		return nil, err
	}
	o.UrlPath = u["Path"]
	major, minor, ok := b.Version()
	switch {
	case !ok:
		return nil, fmt.Errorf("unknown go version %q", b.GoVersion)
	case major == 1 && minor >= 23 || major > 1:
		p, _, err := b.StructFields("net/http.Request", "Method", "URL", "Pattern")
		if err != nil {
			return nil, err
		}
		o.ReqPattern, o.PatternKind = p["Pattern"], 1
	case major == 1 && minor == 22:
		p, _, err := b.StructFields("net/http.Request", "Method", "URL", "pat")
		if err != nil {
			return nil, err
		}
		s, _, err := b.StructFields("net/http.pattern", "str")
		if err != nil {
			return nil, err
		}
		o.ReqPattern, o.PatternStr, o.PatternKind = p["pat"], s["str"], 2
	}
	g, _, err := b.StructFields("runtime.g", "goid", "atomicstatus", "_panic")
	if err != nil {
		return nil, err
	}
	o.G_panic = g["_panic"]
	// HTTP/2 is optional: a program built without it has no such types,
	// and where they are not proven its probes are left out.
	if h2, err := http2Offsets(b); err == nil {
		o.H2Rws, o.H2Status, o.H2WroteHeader = h2[0], h2[1], h2[2]
	}
	routerOffsets(b, &o)
	setWindows(&o)
	return &o, nil
}

// windowMax is the room of the event's window (HTTP_WINDOW_MAX of
// bpf/http_server.c): its path and pattern, adjacent.
const windowMax = uint64(len(bpfHttpServerEvent{}.Path) + len(bpfHttpServerEvent{}.Pattern))

// Sizes of the fields the programs read (64-bit Go).
const (
	sizeString = 16
	sizeWord   = 8 // a pointer or an int
	sizeBool   = 1
)

// setWindows sets the windows through which the programs read several
// fields of one struct at once (probes.Window), from the fields' proven
// offsets; a window left empty makes them read each field alone.
func setWindows(o *bpfHttpServerOffsets) {
	o.RespWinOff, o.RespWinLen, _ = probes.Window(windowMax,
		probes.Field{Off: o.RespWroteHeader, Size: sizeBool}, probes.Field{Off: o.RespStatus, Size: sizeWord})
	req := []probes.Field{
		{Off: o.ReqMethod, Size: sizeString}, {Off: o.ReqUrl, Size: sizeWord},
		{Off: o.ReqProtoMajor, Size: sizeWord}, {Off: o.ReqProtoMinor, Size: sizeWord},
		{Off: o.ReqTls, Size: sizeWord},
	}
	switch o.PatternKind {
	case 1: // Request.Pattern, a string
		req = append(req, probes.Field{Off: o.ReqPattern, Size: sizeString})
	case 2: // Request.pat, a *pattern
		req = append(req, probes.Field{Off: o.ReqPattern, Size: sizeWord})
	}
	o.ReqWinOff, o.ReqWinLen, _ = probes.Window(windowMax, req...)
	// (Unused where the HTTP/2 offsets are not proven: its probes are
	// left out.)
	o.H2WinOff, o.H2WinLen, _ = probes.Window(windowMax,
		probes.Field{Off: o.H2WroteHeader, Size: sizeBool}, probes.Field{Off: o.H2Status, Size: sizeWord})
}

// http2Server names the functions and types of one copy of net/http's
// HTTP/2 server.
type http2Server struct {
	handlerDone, runHandler string // probed functions
	writer, writerState     string // struct types
}

var (
	h2Bundled = http2Server{
		handlerDone: "net/http.(*http2responseWriter).handlerDone",
		runHandler:  "net/http.(*http2serverConn).runHandler.func1",
		writer:      "net/http.http2responseWriter",
		writerState: "net/http.http2responseWriterState",
	}
	h2Internal = http2Server{
		handlerDone: "net/http/internal/http2.(*responseWriter).handlerDone",
		runHandler:  "net/http/internal/http2.(*serverConn).runHandler.func1",
		writer:      "net/http/internal/http2.responseWriter",
		writerState: "net/http/internal/http2.responseWriterState",
	}
)

// http2Offsets returns the offsets of the HTTP/2 response writer's rws,
// and of the state's status and wroteHeader, for the copy of the HTTP/2
// server the binary links.
func http2Offsets(b *symbols.Binary) ([3]uint64, error) {
	h2 := h2Bundled
	if _, err := b.LookupFunc(h2Internal.handlerDone); err == nil {
		h2 = h2Internal
	}
	w, _, err := b.StructFields(h2.writer, "rws")
	if err != nil {
		return [3]uint64{}, err
	}
	s, _, err := b.StructFields(h2.writerState, "status", "wroteHeader")
	if err != nil {
		return [3]uint64{}, err
	}
	return [3]uint64{w["rws"], s["status"], s["wroteHeader"]}, nil
}

// httpServerLeaveOut leaves the HTTP/2 probes out of a program whose HTTP/2
// struct offsets are not proven: its programs would read garbage.
// Routers whose fields or call site cannot be proven are left out too.
func httpServerLeaveOut(b *symbols.Binary) map[string]string {
	var o bpfHttpServerOffsets
	left := routerOffsets(b, &o)
	if _, err := http2Offsets(b); err != nil {
		why := "HTTP/2 requests not measured: " + err.Error()
		for _, f := range []string{h2Bundled.handlerDone, h2Bundled.runHandler, h2Internal.handlerDone, h2Internal.runHandler} {
			left[f] = why
		}
	}
	return left
}

// decodeHTTPServer folds one http_server_event into a shard. Every value
// read from the program is checked first: an implausible one exports
// nothing and is reported by its verdict.
func decodeHTTPServer(sh *aggregator.Shard, t aggregator.TargetID, raw []byte) probes.Verdict {
	if len(raw) < int(unsafe.Sizeof(bpfHttpServerEvent{})) {
		return probes.Malformed
	}
	ev := (*bpfHttpServerEvent)(unsafe.Pointer(&raw[0]))
	if !probes.PlausibleDuration(ev.Hdr.StartNs, ev.Hdr.EndNs) {
		return probes.InvalidDuration
	}
	d := float64(ev.Hdr.EndNs-ev.Hdr.StartNs) / 1e9
	var kb [serverKeyMax]byte
	key := serverKey(kb[:0], t, ev)
	if sh.ObserveMemo(key, t, d) {
		return probes.Decoded // these bytes were decoded (as valid) before
	}
	status := uint16(0)
	if ev.Hdr.Flags&httpFlagStatus != 0 {
		// Written by the handler, or the 200 net/http sends for a handler
		// that wrote nothing (the BPF program supplies that one).
		status = ev.Status
		if !label.PlausibleStatus(status) {
			return probes.InvalidStatus
		}
	} else if ev.Hdr.Flags&httpFlagPanic != 0 {
		status = 500 // what a recovering middleware would have sent
	}
	// A request always has a method. net/http answers 400 to an HTTP/1
	// request whose method is not a token before any handler runs; over
	// HTTP/2 it checks only that the method is a valid header value, so
	// there a client can send one that is not a token.
	method := label.Chars(ev.Method[:], int(ev.MethodLen))
	if len(method) == 0 {
		return probes.InvalidMethod
	}
	if !label.PlausibleMethod(method) {
		if ev.Hdr.Flags&httpFlagHTTP2 != 0 {
			return probes.InvalidPeerMethod
		}
		return probes.InvalidMethod
	}
	// The pattern comes from the program's own code; the path from the
	// client (only checked where it becomes the route).
	rawPattern := label.Chars(ev.Pattern[:], int(ev.PatternLen))
	var muxBuf [len(ev.Pattern) * 2]byte
	if ev.Router == httpRouterMux {
		var ok bool
		if rawPattern, ok = muxRoute(rawPattern, muxBuf[:]); !ok {
			return probes.Malformed
		}
	}
	pattern, ok := label.Text(rawPattern, int(ev.PatternLen) >= len(ev.Pattern), false)
	if !ok {
		return probes.InvalidUTF8
	}
	// A router's route (routers.go) is in the router's syntax.
	var syntax aggregator.RouteSyntax
	if ev.Router != 0 {
		if int(ev.Router) < len(routerSyntax) {
			syntax = routerSyntax[ev.Router]
		}
		if syntax == 0 || len(pattern) == 0 {
			return probes.Malformed // no program of the family writes these
		}
	}
	var path []byte
	if len(pattern) == 0 {
		if path, ok = label.Text(label.Chars(ev.Path[:], int(ev.PathLen)), int(ev.PathLen) >= len(ev.Path), false); !ok {
			return probes.InvalidPath
		}
	}
	// net/http serves HTTP/1.x with a one-digit minor version (any other
	// is answered 505 before a handler runs), "PRI * HTTP/2.0" on an
	// HTTP/1 connection, and HTTP/2 as 2.0.
	version, ok := serverVersion(ev.ProtoMajor, ev.ProtoMinor, ev.Hdr.Flags&httpFlagHTTP2 != 0)
	if !ok {
		return probes.InvalidProto
	}
	var l aggregator.Labels
	if label.KnownMethod(method) {
		l[0] = sh.Intern(method)
	} else {
		l[0] = sh.InternString("_OTHER")
	}
	l[1] = sh.Status(status)
	if syntax != 0 {
		l[2] = sh.RouterRoute(t, syntax, pattern)
	} else {
		l[2] = sh.Route(t, path, pattern)
	}
	switch {
	case ev.Hdr.Flags&httpFlagPanic != 0:
		l[3] = sh.InternString("panic")
	case status >= 500:
		l[3] = l[1]
	}
	// The scheme of the connection the request came on: net/http sets
	// Request.TLS for every request over TLS, and only for those.
	if ev.Hdr.Flags&httpFlagTLS != 0 {
		l[4] = sh.InternString("https")
	} else {
		l[4] = sh.InternString("http")
	}
	l[5] = sh.InternString(version)
	sh.ObserveAndMemo(key, httpServerDuration, t, l, d)
	return probes.Decoded
}

// serverKeyMax bounds serverKey's bytes.
const serverKeyMax = 1 + 4 + 2 + 2 + 4 + 1 + len(bpfHttpServerEvent{}.Method) +
	2 + len(bpfHttpServerEvent{}.Pattern) + 2 + len(bpfHttpServerEvent{}.Path)

// serverKey appends the bytes an event's labels are made of, for the
// shard's memo (aggregator.Shard.ObserveMemo): everything the decoder
// reads but the timestamps. The path only matters without a pattern, or
// with one cut by its buffer (whose check may trim it to nothing).
func serverKey(b []byte, t aggregator.TargetID, ev *bpfHttpServerEvent) []byte {
	h := ev.Hdr.Flags
	b = append(b, kindHTTPServer, byte(t), byte(t>>8), byte(t>>16), byte(t>>24),
		byte(h), byte(h>>8), byte(ev.Status), byte(ev.Status>>8),
		ev.ProtoMajor, ev.ProtoMinor, ev.Router, byte(ev.PatternLen), byte(ev.PatternLen>>8), ev.MethodLen)
	b = append(b, label.Chars(ev.Method[:], int(ev.MethodLen))...)
	pattern := label.Chars(ev.Pattern[:], int(ev.PatternLen))
	b = append(b, pattern...)
	if len(pattern) == 0 || int(ev.PatternLen) >= len(ev.Pattern) {
		b = append(b, byte(ev.PathLen), byte(ev.PathLen>>8))
		b = append(b, label.Chars(ev.Path[:], int(ev.PathLen))...)
	}
	return b
}

// serverVersion is the network.protocol.version of a request net/http
// served, if the version read is one it can serve.
func serverVersion(major, minor uint8, http2 bool) (string, bool) {
	if http2 && (major != 2 || minor != 0) {
		return "", false // the HTTP/2 server's requests are all 2.0
	}
	if major != 1 && (major != 2 || minor != 0) {
		return "", false
	}
	return label.ProtocolVersion(major, minor)
}
