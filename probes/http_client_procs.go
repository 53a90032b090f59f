package probes

import (
	"bytes"
	"structs"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/blindspot-dev/blindspot/aggregator"
	"github.com/blindspot-dev/blindspot/probes/procmem"
	"github.com/blindspot-dev/blindspot/symbols"
)

// goProc is what user space needs to turn addresses a BPF program reported
// about one process back into names: its binary and where it was loaded.
type goProc struct {
	pid  int
	bin  *symbols.Binary
	bias uint64 // runtime address - link-time address (PIE)
	t    aggregator.TargetID
}

// procTable maps PIDs to goProcs for the readers without a lock: replaced
// whole on every (rare) change, read on every event.
type procTable struct {
	mu  sync.Mutex
	cur atomic.Pointer[map[uint32]*goProc]
}

func (pt *procTable) lookup(pid uint32) *goProc {
	m := pt.cur.Load()
	if m == nil {
		return nil
	}
	return (*m)[pid]
}

func (pt *procTable) set(pid uint32, p *goProc) {
	pt.mu.Lock()
	defer pt.mu.Unlock()
	next := map[uint32]*goProc{}
	if old := pt.cur.Load(); old != nil {
		for k, v := range *old {
			next[k] = v
		}
	}
	if p != nil {
		next[pid] = p
	} else {
		delete(next, pid)
	}
	pt.cur.Store(&next)
}

func (pt *procTable) len() int {
	m := pt.cur.Load()
	if m == nil {
		return 0
	}
	return len(*m)
}

// newGoProc reads the load bias of pid's executable from /proc/PID/maps.
func newGoProc(pid int, bin *symbols.Binary, t aggregator.TargetID) *goProc {
	p := &goProc{pid: pid, bin: bin, t: t}
	if bin.PIE {
		if start, err := procmem.ExeMapStart(pid); err == nil {
			p.bias = bin.LoadBias(start)
		}
	}
	return p
}

// typeKey names one runtime type in one process.
type typeKey struct {
	pid   uint32
	rtype uint64
}

// typeNames caches runtime type names per shard (touched only by the
// shard's reader), bounded.
type typeNames map[typeKey]string

const typeCacheLimit = 4096

// name returns the type string of the runtime type at rtype in process p
// ("" when unknown).
func (tn typeNames) name(p *goProc, pid uint32, rtype uint64) string {
	if rtype == 0 {
		return ""
	}
	k := typeKey{pid, rtype}
	if s, ok := tn[k]; ok {
		return s
	}
	s := ""
	if p != nil {
		s, _ = p.bin.TypeName(rtype - p.bias)
	}
	if len(tn) >= typeCacheLimit {
		clear(tn)
	}
	tn[k] = s
	return s
}

// goError is struct go_error of bpf/go_error.h: the type bpf2go generates
// for the Err field of the HTTP client's and the database's events, which
// the decoders convert to it (a conversion that compiles only while the
// types are the same; contract_test.go compares it with the objects' BTF).
type goError struct {
	_          structs.HostLayout
	Type       uint64
	InnerType  uint64
	Inner2Type uint64
	Errno      uint64
	MsgLen     uint8
	Pad        [7]uint8
	Msg        [40]int8
}

// errorType returns the low-cardinality error_type of a captured Go error:
// connection_refused, connection_reset, timeout, context_canceled,
// host_unreachable, dns_error, else the error's Go type name ("*pq.Error").
// It does not allocate once the type names are cached.
func errorType(tn typeNames, p *goProc, pid uint32, e *goError) string {
	typ := tn.name(p, pid, e.Type)
	msg := cbytes(e.Msg[:], int(e.MsgLen))
	var inner, inner2 string
	if typ == "*net.OpError" || typ == "*url.Error" {
		inner = tn.name(p, pid, e.InnerType)
		if inner == "*os.SyscallError" {
			inner2 = tn.name(p, pid, e.Inner2Type)
		}
	}
	return classifyError(typ, inner, inner2, e.Errno, msg)
}

// classifyError maps an error's type names (outer, and for *net.OpError the
// types of its Err and of that error's Err), errno and message prefix to
// error_type.
func classifyError(typ, inner, inner2 string, errno uint64, msg []byte) string {
	switch typ {
	case "":
		return "_OTHER"
	case "context.deadlineExceededError", "*poll.DeadlineExceededError", "*net.timeoutError":
		return "timeout"
	case "*net.DNSError":
		return "dns_error"
	case "*net.OpError":
		switch inner {
		case "*os.SyscallError":
			if inner2 == "syscall.Errno" {
				switch syscall.Errno(errno) {
				case syscall.ECONNREFUSED:
					return "connection_refused"
				case syscall.ECONNRESET, syscall.EPIPE:
					return "connection_reset"
				case syscall.ETIMEDOUT:
					return "timeout"
				case syscall.EHOSTUNREACH, syscall.ENETUNREACH:
					return "host_unreachable"
				}
			}
		case "*poll.DeadlineExceededError", "*net.timeoutError", "context.deadlineExceededError":
			return "timeout"
		case "*net.DNSError":
			return "dns_error"
		}
		return typ
	}
	// errors.New values and friends: recognise the well-known texts.
	switch {
	case string(msg) == "context canceled", bytes.HasSuffix(msg, []byte("request canceled")):
		return "context_canceled"
	case string(msg) == "context deadline exceeded", bytes.Contains(msg, []byte("timeout")),
		bytes.Contains(msg, []byte("deadline exceeded")):
		return "timeout"
	case bytes.Contains(msg, []byte("connection refused")):
		return "connection_refused"
	}
	return typ
}

// perShard builds one value per ring shard of agg, looked up by shard
// without a lock (the map is never written after construction).
func perShard[T any](agg *aggregator.Aggregator, mk func() T) map[*aggregator.Shard]T {
	out := map[*aggregator.Shard]T{}
	if agg == nil {
		return out
	}
	for i := 0; i < agg.Shards(); i++ {
		out[agg.Shard(i)] = mk()
	}
	return out
}
