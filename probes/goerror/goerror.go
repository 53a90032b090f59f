// Package goerror names the Go errors the HTTP client and database/sql
// families capture: a BPF program copies an error's runtime type pointers,
// errno and message prefix (struct go_error of bpf/go_error.h), and user
// space turns them into the low-cardinality error_type label, reading the
// type names from the binary of the process that returned the error.
package goerror

import (
	"bytes"
	"structs"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/blindspot-dev/blindspot/aggregator"
	"github.com/blindspot-dev/blindspot/probes/label"
	"github.com/blindspot-dev/blindspot/probes/procmem"
	"github.com/blindspot-dev/blindspot/symbols"
)

// Proc is what user space needs to turn addresses a BPF program reported
// about one process back into names: its binary and where it was loaded.
type Proc struct {
	Pid  int
	Bin  *symbols.Binary
	Bias uint64 // runtime address - link-time address (PIE)
	T    aggregator.TargetID
}

// Procs maps PIDs to Procs for the readers without a lock: replaced
// whole on every (rare) change, read on every event.
type Procs struct {
	mu  sync.Mutex
	cur atomic.Pointer[map[uint32]*Proc]
}

func (pt *Procs) Lookup(pid uint32) *Proc {
	m := pt.cur.Load()
	if m == nil {
		return nil
	}
	return (*m)[pid]
}

func (pt *Procs) Set(pid uint32, p *Proc) {
	pt.mu.Lock()
	defer pt.mu.Unlock()
	next := map[uint32]*Proc{}
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

func (pt *Procs) Len() int {
	m := pt.cur.Load()
	if m == nil {
		return 0
	}
	return len(*m)
}

// NewProc reads the load bias of pid's executable from /proc/PID/maps.
func NewProc(pid int, bin *symbols.Binary, t aggregator.TargetID) *Proc {
	p := &Proc{Pid: pid, Bin: bin, T: t}
	if bin.PIE {
		if start, err := procmem.ExeMapStart(pid); err == nil {
			p.Bias = bin.LoadBias(start)
		}
	}
	return p
}

// typeKey names one runtime type in one process.
type typeKey struct {
	pid   uint32
	rtype uint64
}

// TypeNames caches runtime type names per shard (touched only by the
// shard's reader), bounded.
type TypeNames map[typeKey]string

const typeCacheLimit = 4096

// Name returns the type string of the runtime type at rtype in process p
// ("" when unknown).
func (tn TypeNames) Name(p *Proc, pid uint32, rtype uint64) string {
	if rtype == 0 {
		return ""
	}
	k := typeKey{pid, rtype}
	if s, ok := tn[k]; ok {
		return s
	}
	s := ""
	if p != nil {
		s, _ = p.Bin.TypeName(rtype - p.Bias)
	}
	if len(tn) >= typeCacheLimit {
		clear(tn)
	}
	tn[k] = s
	return s
}

// Error is struct go_error of bpf/go_error.h: the type bpf2go generates
// for the Err field of the HTTP client's and the database's events, which
// the decoders view as an Error through unsafe.Pointer (Go converts no
// struct with a blank field between packages). The two families' tests
// compare it with the objects' BTF and with their generated type, field by
// field.
type Error struct {
	_          structs.HostLayout
	Type       uint64
	InnerType  uint64
	Inner2Type uint64
	Errno      uint64
	MsgLen     uint8
	Pad        [7]uint8
	Msg        [40]int8
}

// TypeOf returns the low-cardinality error_type of a captured Go error:
// connection_refused, connection_reset, timeout, context_canceled,
// host_unreachable, dns_error, else the error's Go type name ("*pq.Error").
// It does not allocate once the type names are cached.
func TypeOf(tn TypeNames, p *Proc, pid uint32, e *Error) string {
	typ := tn.Name(p, pid, e.Type)
	msg := label.Chars(e.Msg[:], int(e.MsgLen))
	var inner, inner2 string
	if typ == "*net.OpError" || typ == "*url.Error" {
		inner = tn.Name(p, pid, e.InnerType)
		if inner == "*os.SyscallError" {
			inner2 = tn.Name(p, pid, e.Inner2Type)
		}
	}
	return Classify(typ, inner, inner2, e.Errno, msg)
}

// Classify maps an error's type names (outer, and for *net.OpError the
// types of its Err and of that error's Err), errno and message prefix to
// error_type.
func Classify(typ, inner, inner2 string, errno uint64, msg []byte) string {
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

// Structs are the struct fields Offsets reads, for the offset table of Go
// releases (probes/internal/gentable).
var Structs = []symbols.StructSpec{
	{Type: "net.OpError", Fields: []string{"Op", "Net", "Source", "Addr", "Err"}},
	{Type: "os.SyscallError", Fields: []string{"Syscall", "Err"}},
}

// Offsets returns where net.OpError and os.SyscallError keep their
// wrapped error (0 when unknown: then no errno is captured).
func Offsets(b *symbols.Binary) (opErr, sysErr uint64) {
	if f, _, err := b.StructFields("net.OpError", "Op", "Net", "Source", "Addr", "Err"); err == nil {
		opErr = f["Err"]
	}
	if f, _, err := b.StructFields("os.SyscallError", "Syscall", "Err"); err == nil {
		sysErr = f["Err"]
	}
	return opErr, sysErr
}
