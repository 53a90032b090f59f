// Package grpcserver is grpc-go's server probe family
// (google.golang.org/grpc): which functions it probes (Probes), the struct
// fields its BPF programs read (Structs, offsets from symbols: DWARF or
// proven type data), how its events decode into
// rpc_server_call_duration_seconds, and its BPF objects
// (bpf/grpc_server.c, generated into bpf_*_bpfel.go).
package grpcserver

import (
	"bytes"
	"fmt"
	"strings"
	"unsafe"

	"github.com/blindspot-dev/blindspot/aggregator"
	"github.com/blindspot-dev/blindspot/probes"
	"github.com/blindspot-dev/blindspot/probes/goerror"
	"github.com/blindspot-dev/blindspot/probes/label"
	"github.com/blindspot-dev/blindspot/symbols"
)

// kindGRPCServer is the kind of the family's events: FAMILY_GRPC_SERVER of
// bpf/grpc_server.c (compared with it by TestContract).
const kindGRPCServer = 9

// Flags of grpc_server_event: GRPCS_FLAG_* of bpf/grpc_server.c.
const (
	grpcsFlagStatus     = 1
	grpcsFlagUnanswered = 2 // ended in processUnaryRPC, which writes no status
)

var rpcServerDuration = &aggregator.Metric{
	Name:     "rpc_server_call_duration_seconds",
	OTelName: "rpc.server.call.duration",
	Help:     "Duration of gRPC calls served, until the server wrote the call's status (a stream's until it ended).",
	Unit:     "s",
	Kind:     aggregator.Histogram,
	Labels:   []string{"rpc_system", "rpc_service", "rpc_method", "rpc_grpc_status_code"},
	Buckets:  aggregator.DurationBuckets,
}

// Functions the family probes or recognises as callers.
const (
	handleStream = "google.golang.org/grpc.(*Server).handleStream"
	// writeStatus (grpc-go ≥ 1.69) and WriteStatus (before) of the HTTP/2
	// server transport: a binary has one of them.
	writeStatusNew = "google.golang.org/grpc/internal/transport.(*http2Server).writeStatus"
	writeStatusOld = "google.golang.org/grpc/internal/transport.(*http2Server).WriteStatus"
	// The ServerStream method that calls writeStatus (grpc-go ≥ 1.69),
	// where not inlined into its caller.
	streamWriteStatus = "google.golang.org/grpc/internal/transport.(*ServerStream).WriteStatus"
	// Unary calls of the releases before the unified processRPC (v1.50,
	// v1.60 read): the answer, and the status check of its error.
	processUnaryRPC = "google.golang.org/grpc.(*Server).processUnaryRPC"
	sendResponse    = "google.golang.org/grpc.(*Server).sendResponse"
	fromError       = "google.golang.org/grpc/status.FromError"
)

// A call is timed from handleStream, which runs every stream's handler on
// its own goroutine, to the status that goroutine writes at the call's end
// (after the handler returned, a panic recovered by an interceptor
// included, or at once for an unknown method). Both are probed at their
// emulated entries: two hits per call.
//
// One path writes no status: in releases with processUnaryRPC, a unary
// call whose answer failed with an error that carries no status (the
// transport's ConnectionError: the client reset the stream and closed the
// connection before the handler returned). processUnaryRPC then checks
// the error with status.FromError, finds no status, and returns. The
// instruction after that call (hit only when the answer failed, so its
// single-step costs nothing on calls that succeed) ends such a call with
// Unavailable, what otelgrpc reports for it (toRPCErr).
var Probes = []probes.Probe{
	{Function: handleStream, Program: "uprobe_grpc_server_start", Idempotent: true},
	{Function: writeStatusNew, Program: "uprobe_grpc_server_finish", Optional: true, Idempotent: true},
	{Function: writeStatusOld, Program: "uprobe_grpc_server_finish", Optional: true, Idempotent: true},
	unanswered,
}

var unanswered = probes.Probe{Function: processUnaryRPC, Program: "uprobe_grpc_server_unanswered", Call: fromError, After: sendResponse, AfterCall: true, Optional: true}

// Metrics returns the family's metrics, for the aggregator.
func Metrics() []*aggregator.Metric { return []*aggregator.Metric{rpcServerDuration} }

// Structs are the struct fields the family reads. grpc-go is not part of a
// Go release, so no table row answers for them: DWARF or the type data of
// the binary itself (with the type's identity proven) must.
var Structs = []symbols.StructSpec{
	{Type: "google.golang.org/grpc/internal/transport.ServerStream", Fields: []string{"Stream"}},
	{Type: "google.golang.org/grpc/internal/transport.Stream", Fields: []string{"method"}},
	{Type: "google.golang.org/grpc/internal/status.Status", Fields: []string{"s"}},
	{Type: "google.golang.org/genproto/googleapis/rpc/status.Status", Fields: []string{"Code"}},
}

// Family is the grpc-go server family; agg is the aggregator whose shards
// its decoder folds events into.
func Family(agg *aggregator.Aggregator) *probes.Family {
	st := &state{shards: probes.PerShard(agg, func() *shard {
		return &shard{callers: map[callerKey]caller{}, methods: map[string]methodLabels{}}
	})}
	return &probes.Family{
		Name:      "grpc_server",
		Kind:      kindGRPCServer,
		Anchor:    handleStream,
		Probes:    Probes,
		Spec:      loadBpf,
		ConfigMap: "grpc_server_config",
		StartMap:  "grpc_server_starts",
		Configure: Offsets,
		LeaveOut:  leaveOut,
		Decode:    st.decode,
		Invalid:   []string{"status", "path", "utf8", "duration"},
		Attached: func(pid int, bin *symbols.Binary, t aggregator.TargetID) {
			st.procs.Set(uint32(pid), goerror.NewProc(pid, bin, t))
		},
		Detached: func(pid int) { st.procs.Set(uint32(pid), nil) },
	}
}

// leaveOut leaves the unanswered probe out where processUnaryRPC exists
// but its check of the answer's error cannot be found (status.FromError
// inlined, another shape, or not amd64): such calls then stay unmeasured,
// as the status page says.
func leaveOut(b *symbols.Binary) map[string]string {
	if _, err := b.LookupFunc(processUnaryRPC); err != nil {
		return nil
	}
	if _, err := probes.ProbeAddrs(b, unanswered); err != nil {
		return map[string]string{processUnaryRPC: "unary calls whose answer failed without a status are not measured: " + err.Error()}
	}
	return nil
}

// Offsets reads where the fields the BPF programs read live in this
// binary, and checks that the probed functions have the signatures the
// programs read their arguments by.
func Offsets(b *symbols.Binary) (any, error) {
	if err := CheckVersion(b); err != nil {
		return nil, err
	}
	var o bpfGrpcServerOffsets
	s, _, err := b.StructFields("google.golang.org/grpc/internal/transport.Stream", "method")
	if err != nil {
		return nil, err
	}
	o.StreamMethod = s["method"]
	// grpc-go ≥ 1.69 hands handleStream a *ServerStream embedding Stream.
	if _, err := b.LookupFunc(writeStatusNew); err == nil {
		ss, _, err := b.StructFields("google.golang.org/grpc/internal/transport.ServerStream", "Stream")
		if err != nil {
			return nil, err
		}
		o.StreamMethod += ss["Stream"]
	}
	st, _, err := b.StructFields("google.golang.org/grpc/internal/status.Status", "s")
	if err != nil {
		return nil, err
	}
	o.StatusS = st["s"]
	spb, _, err := b.StructFields("google.golang.org/genproto/googleapis/rpc/status.Status", "Code")
	if err != nil {
		return nil, err
	}
	o.SpbCode = spb["Code"]
	return &o, nil
}

// The grpc-go releases whose sources were read for the signatures the BPF
// programs rely on (handleStream's stream in arg 4, writeStatus' stream and
// status in args 2 and 3; newClientStream's cc and method in args 4-6,
// newAttemptLocked's and finish's receiver in arg 1, finish's error in
// args 2-3 and newClientStream's error in results 3-4): v1.50 to v1.85. A newer release is refused until checked.
const (
	minMinor = 50
	maxMinor = 85
)

// CheckVersion refuses a binary whose grpc-go release is outside the
// checked range, or unknown.
func CheckVersion(b *symbols.Binary) error {
	v, from, err := Version(b)
	if err != nil {
		return err
	}
	var major, minor, patch int
	if _, err := fmt.Sscanf(strings.SplitN(v, "-", 2)[0], "v%d.%d.%d", &major, &minor, &patch); err != nil || major != 1 {
		return fmt.Errorf("google.golang.org/grpc %s%s: unrecognised version", v, from)
	}
	if minor < minMinor || minor > maxMinor {
		return fmt.Errorf("google.golang.org/grpc %s%s: only v1.%d to v1.%d are checked", v, from, minMinor, maxMinor)
	}
	return nil
}

// userAgent prefixes grpc-go's user-agent constant, "grpc-go/" + Version
// (grpcUA of google.golang.org/grpc, in every release checked).
const userAgent = "grpc-go/"

// Version returns the grpc-go release b links, and where it was read
// when not from the build info (for messages). Without module information
// (Debian builds without it) the release is read from grpc-go's
// user-agent constant in the read-only data: exactly one version must be
// there. Only the minor release is relied on, which the constant gives
// exactly (a dot ends it; see symbols.ReadVersionStrings).
func Version(b *symbols.Binary) (v, from string, err error) {
	if v, ok := b.Deps["google.golang.org/grpc"]; ok {
		return v, "", nil
	}
	const unknown = "google.golang.org/grpc version unknown (no module information, and %s): probe signatures unproven"
	vs, err := b.ReadVersionStrings(userAgent)
	switch {
	case err != nil:
		return "", "", fmt.Errorf(unknown, "its user-agent string could not be read: "+err.Error())
	case len(vs.Malformed) > 0:
		return "", "", fmt.Errorf(unknown, "a malformed user-agent string in read-only data: "+userAgent+vs.Malformed[0])
	case len(vs.Found) == 0:
		return "", "", fmt.Errorf(unknown, "no "+userAgent+" user-agent string in read-only data")
	case len(vs.Found) > 1:
		return "", "", fmt.Errorf(unknown, "user-agent strings of two releases in read-only data: "+
			userAgent+vs.Found[0][1:]+" and "+userAgent+vs.Found[1][1:])
	}
	v = vs.Found[0]
	return v, " (no module information: read from its user-agent string " + userAgent + v[1:] + ")", nil
}

type state struct {
	procs  goerror.Procs
	shards map[*aggregator.Shard]*shard
}

// shard holds caches touched only by one ring's reader.
type shard struct {
	callers map[callerKey]caller
	methods map[string]methodLabels
}

type callerKey struct {
	pid        uint32
	ret1, ret2 uint64
}

type caller uint8

const (
	callerUnknown  caller = iota // not resolvable: refuse the event
	callerHandler                // a handler's runner: the method is registered
	callerNoMethod               // handleStream itself: unknown service or method
)

type methodLabels struct{ service, method aggregator.Value }

const cacheLimit = 4096

// decode folds one grpc_server_event into a shard after checking it.
func (st *state) decode(sh *aggregator.Shard, t aggregator.TargetID, raw []byte) probes.Verdict {
	if len(raw) < int(unsafe.Sizeof(bpfGrpcServerEvent{})) {
		return probes.Malformed
	}
	ev := (*bpfGrpcServerEvent)(unsafe.Pointer(&raw[0]))
	c := st.shards[sh]
	if c == nil {
		return probes.Malformed
	}
	if !probes.PlausibleDuration(ev.Hdr.StartNs, ev.Hdr.EndNs) {
		return probes.InvalidDuration
	}
	code := uint32(0) // a status without a proto is OK
	if ev.Hdr.Flags&grpcsFlagStatus != 0 {
		code = ev.Code
		if code > 16 {
			return probes.InvalidStatus
		}
	}
	var l aggregator.Labels
	l[0] = sh.InternString("grpc")
	who := callerHandler // processUnaryRPC runs registered methods only
	if ev.Hdr.Flags&grpcsFlagUnanswered == 0 {
		who = st.caller(c, ev)
	}
	switch who {
	case callerNoMethod:
		// The method is whatever the client sent: not a label.
		l[1], l[2] = sh.InternString("_OTHER"), sh.InternString("_OTHER")
	case callerHandler:
		ml, v := c.method(sh, label.Chars(ev.Method[:], int(ev.MethodLen)), int(ev.MethodLen) > len(ev.Method))
		if v != probes.Decoded {
			return v
		}
		l[1], l[2] = ml.service, ml.method
	default:
		return probes.Malformed
	}
	l[3] = codeValue(sh, code)
	sh.Observe(rpcServerDuration, t, l, float64(ev.Hdr.EndNs-ev.Hdr.StartNs)/1e9)
	return probes.Decoded
}

// codeValue is the rpc_grpc_status_code label: the code's number.
func codeValue(sh *aggregator.Shard, code uint32) aggregator.Value {
	return sh.InternString(codeNames[code])
}

var codeNames = [17]string{"0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15", "16"}

// caller says who called writeStatus, from the return addresses the BPF
// program read, resolved in the process's own binary.
func (st *state) caller(c *shard, ev *bpfGrpcServerEvent) caller {
	k := callerKey{ev.Hdr.Pid, ev.Ret1, ev.Ret2}
	if v, ok := c.callers[k]; ok {
		return v
	}
	p := st.procs.Lookup(ev.Hdr.Pid)
	if p == nil {
		return callerUnknown
	}
	v := classify(p.Bin, ev.Ret1-p.Bias, ev.Ret2-p.Bias)
	if len(c.callers) >= cacheLimit {
		clear(c.callers)
	}
	c.callers[k] = v
	return v
}

// classify names the caller of writeStatus from its return address ret1
// and, where that is ServerStream.WriteStatus, the next one up (ret2).
func classify(b *symbols.Binary, ret1, ret2 uint64) caller {
	f, ok := b.FuncForPC(ret1)
	if !ok {
		return callerUnknown
	}
	if f.Name == streamWriteStatus {
		if f, ok = b.FuncForPC(ret2); !ok {
			return callerUnknown
		}
	}
	switch {
	case f.Name == handleStream:
		return callerNoMethod
	case strings.HasPrefix(f.Name, "google.golang.org/grpc."):
		return callerHandler // processUnaryRPC, processStreamingRPC
	}
	return callerUnknown
}

// method splits "/package.Service/Method" into the rpc_service and
// rpc_method labels, cached.
func (c *shard) method(sh *aggregator.Shard, full []byte, truncated bool) (methodLabels, probes.Verdict) {
	if ml, ok := c.methods[string(full)]; ok && !truncated {
		return ml, probes.Decoded
	}
	if truncated {
		return methodLabels{}, probes.InvalidPath
	}
	text, ok := label.Text(full, false, false)
	if !ok {
		return methodLabels{}, probes.InvalidUTF8
	}
	svc, m, ok := SplitMethod(text)
	if !ok {
		return methodLabels{}, probes.InvalidPath
	}
	ml := methodLabels{service: sh.Intern(svc), method: sh.Intern(m)}
	if len(c.methods) >= cacheLimit {
		clear(c.methods)
	}
	c.methods[string(full)] = ml
	return ml, probes.Decoded
}

// SplitMethod splits a gRPC method name "/package.Service/Method" as
// grpc-go sends it into service and method; false when it is not one.
func SplitMethod(full []byte) (service, method []byte, ok bool) {
	if len(full) < 4 || full[0] != '/' {
		return nil, nil, false
	}
	i := bytes.LastIndexByte(full, '/')
	if i <= 1 || i == len(full)-1 {
		return nil, nil, false
	}
	return full[1:i], full[i+1:], true
}
