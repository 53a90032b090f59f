// Package grpcclient is grpc-go's client probe family
// (google.golang.org/grpc): which functions it probes (Probes), the struct
// fields its BPF programs read (Structs), how its events decode into
// rpc_client_call_duration_seconds, and its BPF objects
// (bpf/grpc_client.c, generated into bpf_*_bpfel.go).
package grpcclient

import (
	"strings"
	"unsafe"

	"github.com/blindspot-dev/blindspot/aggregator"
	"github.com/blindspot-dev/blindspot/probes"
	"github.com/blindspot-dev/blindspot/probes/goerror"
	"github.com/blindspot-dev/blindspot/probes/grpcserver"
	"github.com/blindspot-dev/blindspot/probes/label"
	"github.com/blindspot-dev/blindspot/symbols"
)

// kindGRPCClient is the kind of the family's events: FAMILY_GRPC_CLIENT of
// bpf/grpc_client.c (compared with it by TestContract).
const kindGRPCClient = 10

var rpcClientDuration = &aggregator.Metric{
	Name:     "rpc_client_call_duration_seconds",
	OTelName: "rpc.client.call.duration",
	Help:     "Duration of gRPC calls made, from the call's start until it ended with its status (a stream's until it ended).",
	Unit:     "s",
	Kind:     aggregator.Histogram,
	Labels:   []string{"rpc_system", "rpc_service", "rpc_method", "rpc_grpc_status_code", "server_address", "server_port"},
	Buckets:  aggregator.DurationBuckets,
}

const (
	newClientStream  = "google.golang.org/grpc.newClientStream"
	newAttemptLocked = "google.golang.org/grpc.(*clientStream).newAttemptLocked"
	finish           = "google.golang.org/grpc.(*clientStream).finish"
)

// Every call made through a ClientConn (Invoke, NewStream, the generated
// stubs, through interceptors or not) creates its stream in
// newClientStream, makes its first attempt in newAttemptLocked on the same
// goroutine, and ends in finish, called once with the call's error. A call
// whose stream could not be created (a refused connection, a deadline
// passing during name resolution or connection, a closed ClientConn) gets
// no finish: it ends when newClientStream returns its error, so every RET
// of newClientStream is probed too. From v1.50 to v1.85 a first attempt
// that finds no transport returns from it without finish, and no call on
// that path marks it on every release (v1.85's deferred cleanup is
// recent); the instructions after the calls of newClientStream would miss
// calls made through stream interceptors. Three emulated hits and one
// single-stepped RET per call.
var Probes = []probes.Probe{
	{Function: newClientStream, Program: "uprobe_grpc_client_start", Idempotent: true},
	{Function: newAttemptLocked, Program: "uprobe_grpc_client_bind", Idempotent: true},
	{Function: newClientStream, Program: "uprobe_grpc_client_created", Returns: true},
	{Function: finish, Program: "uprobe_grpc_client_finish", Idempotent: true},
}

// Metrics returns the family's metrics, for the aggregator.
func Metrics() []*aggregator.Metric { return []*aggregator.Metric{rpcClientDuration} }

// Structs are the struct fields the family reads (DWARF or proven type
// data only: grpc-go has no table rows).
var Structs = []symbols.StructSpec{
	{Type: "google.golang.org/grpc.ClientConn", Fields: []string{"target"}},
	{Type: "google.golang.org/grpc/internal/status.Error", Fields: []string{"s"}},
	{Type: "google.golang.org/grpc/internal/status.Status", Fields: []string{"s"}},
	{Type: "google.golang.org/genproto/googleapis/rpc/status.Status", Fields: []string{"Code"}},
}

// Family is the grpc-go client family.
func Family(agg *aggregator.Aggregator) *probes.Family {
	st := &state{shards: probes.PerShard(agg, func() *shard {
		return &shard{types: goerror.TypeNames{}, methods: map[string]methodLabels{}, hosts: map[string]hostPort{}}
	})}
	return &probes.Family{
		Name:      "grpc_client",
		Kind:      kindGRPCClient,
		Anchor:    newClientStream,
		Probes:    Probes,
		Spec:      loadBpf,
		ConfigMap: "grpc_client_config",
		StartMap:  "grpc_client_starts",
		Configure: Offsets,
		Decode:    st.decode,
		Invalid:   []string{"status", "method", "utf8", "port", "duration"},
		Attached: func(pid int, bin *symbols.Binary, t aggregator.TargetID) {
			st.procs.Set(uint32(pid), goerror.NewProc(pid, bin, t))
		},
		Detached: func(pid int) { st.procs.Set(uint32(pid), nil) },
	}
}

// Offsets reads where the fields the BPF programs read live in this
// binary, after checking the grpc-go release (see grpcserver.CheckVersion).
func Offsets(b *symbols.Binary) (any, error) {
	if err := grpcserver.CheckVersion(b); err != nil {
		return nil, err
	}
	var o bpfGrpcClientOffsets
	cc, _, err := b.StructFields("google.golang.org/grpc.ClientConn", "target")
	if err != nil {
		return nil, err
	}
	o.CcTarget = cc["target"]
	e, _, err := b.StructFields("google.golang.org/grpc/internal/status.Error", "s")
	if err != nil {
		return nil, err
	}
	o.ErrorS = e["s"]
	s, _, err := b.StructFields("google.golang.org/grpc/internal/status.Status", "s")
	if err != nil {
		return nil, err
	}
	o.StatusS = s["s"]
	spb, _, err := b.StructFields("google.golang.org/genproto/googleapis/rpc/status.Status", "Code")
	if err != nil {
		return nil, err
	}
	o.SpbCode = spb["Code"]
	return &o, nil
}

type state struct {
	procs  goerror.Procs
	shards map[*aggregator.Shard]*shard
}

type shard struct {
	types   goerror.TypeNames
	methods map[string]methodLabels
	hosts   map[string]hostPort
}

type methodLabels struct{ service, method aggregator.Value }
type hostPort struct{ addr, port aggregator.Value }

const cacheLimit = 4096

// The runtime type names of the errors finish gets that say the status:
// grpc-go's status error (its code read from it), and io.EOF (an
// *errors.errorString "EOF"), which ends a stream that succeeded.
const (
	statusErrorType = "*status.Error"
	errorStringType = "*errors.errorString"
)

func (st *state) decode(sh *aggregator.Shard, t aggregator.TargetID, raw []byte) probes.Verdict {
	if len(raw) < int(unsafe.Sizeof(bpfGrpcClientEvent{})) {
		return probes.Malformed
	}
	ev := (*bpfGrpcClientEvent)(unsafe.Pointer(&raw[0]))
	c := st.shards[sh]
	if c == nil {
		return probes.Malformed
	}
	if !probes.PlausibleDuration(ev.Hdr.StartNs, ev.Hdr.EndNs) {
		return probes.InvalidDuration
	}
	code := uint32(0)
	if ev.Err.Type != 0 {
		typ := c.types.Name(st.procs.Lookup(ev.Hdr.Pid), ev.Hdr.Pid, ev.Err.Type)
		switch {
		case typ == statusErrorType:
			// A status error is never OK (status.Error(OK) is nil).
			if ev.Code == 0 || ev.Code > 16 {
				return probes.InvalidStatus
			}
			code = ev.Code
		case typ == errorStringType && string(label.Chars(ev.Err.Msg[:], int(ev.Err.MsgLen))) == "EOF":
			code = 0
		case typ == "":
			return probes.Malformed // the type could not be read
		default:
			code = 2 // Unknown: what status.Code says of any other error
		}
	}
	// The method is the program's own (the stub's constant, or what it
	// passed to Invoke/NewStream).
	if int(ev.MethodLen) > len(ev.Method) {
		return probes.InvalidMethod
	}
	ml, v := c.method(sh, label.Chars(ev.Method[:], int(ev.MethodLen)))
	if v != probes.Decoded {
		return v
	}
	if int(ev.TargetLen) > len(ev.Target) {
		return probes.InvalidUTF8
	}
	hp, v := c.hostPort(sh, label.Chars(ev.Target[:], int(ev.TargetLen)))
	if v != probes.Decoded {
		return v
	}
	var l aggregator.Labels
	l[0] = sh.InternString("grpc")
	l[1], l[2] = ml.service, ml.method
	l[3] = sh.InternString(codeNames[code])
	l[4], l[5] = hp.addr, hp.port
	sh.Observe(rpcClientDuration, t, l, float64(ev.Hdr.EndNs-ev.Hdr.StartNs)/1e9)
	return probes.Decoded
}

var codeNames = [17]string{"0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15", "16"}

func (c *shard) method(sh *aggregator.Shard, full []byte) (methodLabels, probes.Verdict) {
	if ml, ok := c.methods[string(full)]; ok {
		return ml, probes.Decoded
	}
	text, ok := label.Text(full, false, false)
	if !ok {
		return methodLabels{}, probes.InvalidUTF8
	}
	svc, m, ok := grpcserver.SplitMethod(text)
	if !ok {
		return methodLabels{}, probes.InvalidMethod
	}
	ml := methodLabels{service: sh.Intern(svc), method: sh.Intern(m)}
	if len(c.methods) >= cacheLimit {
		clear(c.methods)
	}
	c.methods[string(full)] = ml
	return ml, probes.Decoded
}

// hostPort turns the ClientConn's dial target into server_address and
// server_port, cached.
func (c *shard) hostPort(sh *aggregator.Shard, target []byte) (hostPort, probes.Verdict) {
	if hp, ok := c.hosts[string(target)]; ok {
		return hp, probes.Decoded
	}
	text, ok := label.Text(target, false, false)
	if !ok {
		return hostPort{}, probes.InvalidUTF8
	}
	addr, port, ok := SplitTarget(string(text))
	if !ok {
		return hostPort{}, probes.InvalidPort
	}
	hp := hostPort{addr: sh.InternString(addr)}
	if port != "" {
		hp.port = sh.InternString(port)
	}
	if len(c.hosts) >= cacheLimit {
		clear(c.hosts)
	}
	c.hosts[string(target)] = hp
	return hp, probes.Decoded
}

// SplitTarget splits a grpc-go dial target into the server's address and
// port: "host:port", "dns:///host:port", "dns://resolver/host:port",
// "passthrough:///host:port", "[::1]:50051"; "unix:///path", "unix:path"
// and "unix-abstract:name" give the socket's name and no port. The port is
// empty where the target names none; false when it is not a port.
func SplitTarget(target string) (addr, port string, ok bool) {
	endpoint := target
	scheme := ""
	if i := strings.Index(target, "://"); i > 0 {
		scheme, endpoint = target[:i], target[i+3:]
		// Skip the authority (the resolver's address) up to the path.
		if j := strings.IndexByte(endpoint, '/'); j >= 0 {
			endpoint = endpoint[j+1:]
		} else {
			endpoint = ""
		}
		if scheme == "unix" {
			endpoint = "/" + endpoint
		}
	} else if s, rest, found := strings.Cut(target, ":"); found && (s == "unix" || s == "unix-abstract") {
		scheme, endpoint = s, rest
	}
	if scheme == "unix" || scheme == "unix-abstract" {
		return endpoint, "", endpoint != ""
	}
	addr = endpoint
	if i := strings.LastIndexByte(endpoint, ':'); i >= 0 && !strings.Contains(endpoint[i:], "]") {
		addr, port = endpoint[:i], endpoint[i+1:]
		if !label.PlausiblePort([]byte(port)) {
			return "", "", false
		}
	}
	if len(addr) > 1 && addr[0] == '[' && addr[len(addr)-1] == ']' {
		addr = addr[1 : len(addr)-1]
	}
	return addr, port, addr != ""
}
