// Package httpclient is the net/http client's probe family: which
// functions it probes (Probes), the struct fields its BPF programs read
// (Structs), how its events decode into
// http_client_request_duration_seconds, and its BPF objects
// (bpf/http_client.c, generated into bpf_*_bpfel.go).
package httpclient

import (
	"bytes"
	"unsafe"

	"github.com/blindspot-dev/blindspot/aggregator"
	"github.com/blindspot-dev/blindspot/probes"
	"github.com/blindspot-dev/blindspot/probes/goerror"
	"github.com/blindspot-dev/blindspot/probes/label"
	"github.com/blindspot-dev/blindspot/symbols"
)

// kindHTTPClient is the kind of the family's events: FAMILY_HTTP_CLIENT of
// bpf/common.h (compared with it by TestConstantsMatchC).
const kindHTTPClient = 2

// Flags of http_client_event: HTTPC_FLAG_* of bpf/http_client.c (compared
// with it by TestConstantsMatchC).
const httpcFlagResponse = 1

var httpClientDuration = &aggregator.Metric{
	Name:     "http_client_request_duration_seconds",
	OTelName: "http.client.request.duration",
	Help:     "Duration of outgoing HTTP requests, until the response headers arrived or the request failed.",
	Unit:     "s",
	Kind:     aggregator.Histogram,
	Labels:   []string{"http_request_method", "http_response_status_code", "server_address", "server_port", "error_type", "network_protocol_version"},
	Buckets:  aggregator.DurationBuckets,
}

// Every request made through an *http.Transport passes through its
// roundTrip method, which returns once the response headers have arrived
// (or the request failed). Its entry is an emulated PUSHQ BP (Go ≥ 1.21) or
// the emulated stack-check JBE (older: the start program is idempotent); its
// end is each RET, which the kernel single-steps. Two hits per request.
var Probes = []probes.Probe{
	{Function: "net/http.(*Transport).roundTrip", Program: "uprobe_http_client_start", Idempotent: true},
	{Function: "net/http.(*Transport).roundTrip", Program: "uprobe_http_client_finish", Returns: true},
}

// httpClientState is the HTTP client family's user-space state.
type httpClientState struct {
	procs  goerror.Procs
	shards map[*aggregator.Shard]*httpClientShard
}

// httpClientShard holds caches touched only by one ring's reader.
type httpClientShard struct {
	types goerror.TypeNames
	hosts map[string]hostPort // "scheme\x00host" → labels
}

type hostPort struct{ addr, port aggregator.Value }

const hostCacheLimit = 4096

// Metrics returns the family's metrics, for the aggregator.
func Metrics() []*aggregator.Metric {
	return []*aggregator.Metric{httpClientDuration}
}

// Structs are the struct fields the family reads, for the offset table of
// Go releases (probes/internal/gentable); the errors' are goerror.Structs.
var Structs = []symbols.StructSpec{
	{Type: "net/http.Request", Fields: []string{"Method", "URL", "Host"}},
	{Type: "net/url.URL", Fields: []string{"Scheme", "Host", "Path"}},
	{Type: "net/http.Response", Fields: []string{"Status", "StatusCode", "Proto", "ProtoMajor", "ProtoMinor"}},
}

// Family is the net/http client family; agg is the aggregator whose
// shards its decoder folds events into.
func Family(agg *aggregator.Aggregator) *probes.Family {
	st := &httpClientState{shards: probes.PerShard(agg, func() *httpClientShard {
		return &httpClientShard{types: goerror.TypeNames{}, hosts: map[string]hostPort{}}
	})}
	return &probes.Family{
		Name:      "http_client",
		Kind:      kindHTTPClient,
		Anchor:    "net/http.(*Transport).roundTrip",
		Probes:    Probes,
		Spec:      loadBpf,
		ConfigMap: "http_client_config",
		StartMap:  "http_client_starts",
		Configure: httpClientOffsets,
		Decode:    st.decode,
		Invalid:   []string{"status", "method", "utf8", "port", "duration", "host", "proto"},
		Attached: func(pid int, bin *symbols.Binary, t aggregator.TargetID) {
			st.procs.Set(uint32(pid), goerror.NewProc(pid, bin, t))
		},
		Detached: func(pid int) { st.procs.Set(uint32(pid), nil) },
	}
}

func httpClientOffsets(b *symbols.Binary) (any, error) {
	var o bpfHttpClientOffsets
	req, _, err := b.StructFields("net/http.Request", "Method", "URL", "Host")
	if err != nil {
		return nil, err
	}
	o.ReqMethod, o.ReqUrl = req["Method"], req["URL"]
	u, _, err := b.StructFields("net/url.URL", "Scheme", "Host", "Path")
	if err != nil {
		return nil, err
	}
	o.UrlScheme, o.UrlHost = u["Scheme"], u["Host"]
	resp, _, err := b.StructFields("net/http.Response", "Status", "StatusCode", "Proto", "ProtoMajor", "ProtoMinor")
	if err != nil {
		return nil, err
	}
	o.RespStatus = resp["StatusCode"]
	o.RespProtoMajor, o.RespProtoMinor = resp["ProtoMajor"], resp["ProtoMinor"]
	o.OpErrErr, o.SyscallErrErr = goerror.Offsets(b)
	o.RespWinOff, o.RespWinLen, _ = probes.Window(windowMax,
		probes.Field{Off: o.RespStatus, Size: 8}, probes.Field{Off: o.RespProtoMajor, Size: 8},
		probes.Field{Off: o.RespProtoMinor, Size: 8})
	o.UrlWinOff, o.UrlWinLen, _ = probes.Window(windowMax,
		probes.Field{Off: o.UrlScheme, Size: 16}, probes.Field{Off: o.UrlHost, Size: 16})
	return &o, nil
}

// windowMax is the room of the event's window (HTTPC_WINDOW_MAX of
// bpf/http_client.c): its scheme and host, adjacent.
const windowMax = uint64(len(bpfHttpClientEvent{}.Scheme) + len(bpfHttpClientEvent{}.Host))

// decode folds one http_client_event into a shard, after checking every
// value read from the program (see httpserver's decoder).
func (st *httpClientState) decode(sh *aggregator.Shard, t aggregator.TargetID, raw []byte) probes.Verdict {
	if len(raw) < int(unsafe.Sizeof(bpfHttpClientEvent{})) {
		return probes.Malformed
	}
	ev := (*bpfHttpClientEvent)(unsafe.Pointer(&raw[0]))
	c := st.shards[sh]
	if c == nil {
		return probes.Malformed
	}
	if !probes.PlausibleDuration(ev.Hdr.StartNs, ev.Hdr.EndNs) {
		return probes.InvalidDuration
	}
	d := float64(ev.Hdr.EndNs-ev.Hdr.StartNs) / 1e9
	// An error's type is read from the program: only calls without one
	// are memoised.
	var kb [clientKeyMax]byte
	var key []byte
	if ev.Err.Type == 0 {
		key = clientKey(kb[:0], t, ev)
		if sh.ObserveMemo(key, t, d) {
			return probes.Decoded // these bytes were decoded (as valid) before
		}
	}
	var l aggregator.Labels
	method := label.Chars(ev.Method[:], int(ev.MethodLen))
	switch {
	case len(method) == 0:
		l[0] = sh.InternString("GET") // net/http: "" means GET
	case !label.PlausibleMethod(method):
		return probes.InvalidMethod
	case label.KnownMethod(method):
		l[0] = sh.Intern(method)
	default:
		l[0] = sh.InternString("_OTHER")
	}
	if int(ev.HostLen) > len(ev.Host) {
		return probes.InvalidHost // cut: its port would be wrong
	}
	hp, v := c.hostPort(sh, label.Chars(ev.Scheme[:], int(ev.SchemeLen)), label.Chars(ev.Host[:], int(ev.HostLen)), false)
	if v != probes.Decoded {
		return v
	}
	l[2], l[3] = hp.addr, hp.port
	// The status last: the checks above tell more about how the program
	// was read than what a server sent.
	if ev.Hdr.Flags&httpcFlagResponse != 0 {
		switch {
		case label.PlausibleStatus(ev.Status):
			l[1] = sh.Status(ev.Status)
		case ev.Status == 0 || ev.Status > 999:
			// net/http's client reads exactly three digits over HTTP/1
			// (a server answering "000" is broken beyond use), and an
			// HTTP/2 server sending more is too; 0 is also what an
			// unwritten field holds.
			return probes.InvalidStatus
		default:
			return probes.InvalidPeerStatus // what the server sent (some send 999)
		}
		// The version of the response: net/http's HTTP/1 client parses
		// "HTTP/M.N" with one digit each, its HTTP/2 client sets 2.0.
		version, ok := label.ProtocolVersion(ev.ProtoMajor, ev.ProtoMinor)
		switch {
		case !ok:
			return probes.InvalidProto
		case ev.ProtoMajor == 0:
			// Only a broken server answers HTTP/0.x, and 0.0 is also what
			// an unwritten field holds: no version rather than a wrong one.
		default:
			l[5] = sh.InternString(version)
		}
	}
	if ev.Err.Type != 0 {
		e := (*goerror.Error)(unsafe.Pointer(&ev.Err))
		l[4] = sh.InternString(goerror.TypeOf(c.types, st.procs.Lookup(ev.Hdr.Pid), ev.Hdr.Pid, e))
	}
	if key != nil {
		sh.ObserveAndMemo(key, httpClientDuration, t, l, d)
	} else {
		sh.Observe(httpClientDuration, t, l, d)
	}
	return probes.Decoded
}

// clientKeyMax bounds clientKey's bytes.
const clientKeyMax = 1 + 4 + 2 + 2 + 2 + 3 + 2 + len(bpfHttpClientEvent{}.Method) +
	len(bpfHttpClientEvent{}.Scheme) + len(bpfHttpClientEvent{}.Host)

// clientKey appends the bytes the labels of an event without an error are
// made of, for the shard's memo (see httpserver's serverKey).
func clientKey(b []byte, t aggregator.TargetID, ev *bpfHttpClientEvent) []byte {
	h := ev.Hdr.Flags
	b = append(b, kindHTTPClient, byte(t), byte(t>>8), byte(t>>16), byte(t>>24),
		byte(h), byte(h>>8), byte(ev.Status), byte(ev.Status>>8), ev.ProtoMajor, ev.ProtoMinor,
		ev.MethodLen, ev.SchemeLen, byte(ev.HostLen), byte(ev.HostLen>>8))
	b = append(b, label.Chars(ev.Method[:], int(ev.MethodLen))...)
	b = append(b, label.Chars(ev.Scheme[:], int(ev.SchemeLen))...)
	return append(b, label.Chars(ev.Host[:], int(ev.HostLen))...)
}

// hostPort returns the server_address and server_port labels of a URL's
// scheme and host (truncated: the host may have been cut by its buffer),
// cached. Only plausible hosts are cached: a cached one needs no check.
func (c *httpClientShard) hostPort(sh *aggregator.Shard, scheme, host []byte, truncated bool) (hostPort, probes.Verdict) {
	var buf [len(bpfHttpClientEvent{}.Scheme) + 1 + len(bpfHttpClientEvent{}.Host)]byte
	key := append(append(append(buf[:0], scheme...), 0), host...)
	if hp, ok := c.hosts[string(key)]; ok {
		return hp, probes.Decoded
	}
	scheme, ok := label.Text(scheme, false, false)
	if !ok {
		return hostPort{}, probes.InvalidUTF8
	}
	if host, ok = label.Text(host, truncated, false); !ok {
		return hostPort{}, probes.InvalidUTF8
	}
	// The port as splitHostPort finds it, checked before anything is
	// made of it: refusing allocates nothing.
	if i := bytes.LastIndexByte(host, ':'); i >= 0 && bytes.IndexByte(host[i:], ']') < 0 {
		if p := host[i+1:]; len(p) > 0 && !label.PlausiblePort(p) {
			return hostPort{}, probes.InvalidPort
		}
	}
	addr, port := splitHostPort(string(scheme), string(host))
	hp := hostPort{addr: sh.InternString(addr), port: sh.InternString(port)}
	if len(c.hosts) >= hostCacheLimit {
		clear(c.hosts)
	}
	c.hosts[string(key)] = hp
	return hp, probes.Decoded
}

// splitHostPort splits a URL's host ("example.com:8080", "[::1]:80",
// "example.com") into address and port, the port defaulting by scheme.
func splitHostPort(scheme, host string) (addr, port string) {
	addr = host
	if i := bytes.LastIndexByte([]byte(host), ':'); i >= 0 && !bytes.Contains([]byte(host[i:]), []byte("]")) {
		addr, port = host[:i], host[i+1:]
	}
	if len(addr) > 1 && addr[0] == '[' && addr[len(addr)-1] == ']' {
		addr = addr[1 : len(addr)-1]
	}
	if port == "" {
		switch scheme {
		case "http", "ws":
			port = "80"
		case "https", "wss":
			port = "443"
		}
	}
	return addr, port
}
