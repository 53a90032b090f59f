package probes

import (
	"fmt"
	"structs"
	"unsafe"

	"github.com/blindspot-dev/blindspot/aggregator"
	"github.com/blindspot-dev/blindspot/symbols"
)

// The manager's machinery (readers, windows, the invalid-event policy) is
// tested here with stand-in families whose decoder returns the verdict
// each event carries; every real family tests its own decoder in its own
// package (probes/httpserver, ..., probes/userfunc).
const (
	kindServer = 1 // a stand-in for http_server's events
	kindClient = 2 // a stand-in for http_client's events
)

// testEvent is a stand-in family's event: the header every event starts
// with, then the verdict its decoder is to return.
type testEvent struct {
	_       structs.HostLayout
	Hdr     EventHeader
	Verdict uint8
	_       [7]uint8
}

var fakeDuration = &aggregator.Metric{
	Name: "fake_duration_seconds", Help: "Stand-in family's durations.", Unit: "s",
	Kind: aggregator.Histogram, Labels: []string{"kind"}, Buckets: aggregator.DurationBuckets,
}

// fakeEvent is an event of a stand-in family of the given kind, from pid,
// that its decoder judges v.
func fakeEvent(kind uint16, pid uint32, v Verdict) []byte {
	ev := testEvent{Verdict: uint8(v)}
	ev.Hdr.Kind, ev.Hdr.Pid, ev.Hdr.StartNs, ev.Hdr.EndNs = kind, pid, 1000000, 3000000
	return raw(&ev)
}

// fakeDecode returns the verdict the event carries, folding it into the
// shard (without allocating once its label is interned) when Decoded.
func fakeDecode(sh *aggregator.Shard, t aggregator.TargetID, raw []byte) Verdict {
	if len(raw) < int(unsafe.Sizeof(testEvent{})) {
		return Malformed
	}
	ev := (*testEvent)(unsafe.Pointer(&raw[0]))
	if v := Verdict(ev.Verdict); v != Decoded {
		return v
	}
	var l aggregator.Labels
	if ev.Hdr.Kind == kindServer {
		l[0] = sh.InternString("server")
	} else {
		l[0] = sh.InternString("client")
	}
	sh.Observe(fakeDuration, t, l, float64(ev.Hdr.EndNs-ev.Hdr.StartNs)/1e9)
	return Decoded
}

// fakeFamily is a stand-in family with events of the given kind.
func fakeFamily(name string, kind uint16) *Family {
	return &Family{Name: name, Kind: kind, Decode: fakeDecode,
		Invalid: []string{"status", "method", "utf8", "path", "port", "duration", "host"}}
}

// kindEntries is a stand-in for a family of configured entries (Entries,
// the business functions'): its events carry the entry they belong to.
const kindEntries = 6

// entryEvent is the stand-in entries family's event: testEvent's layout
// (its decoder is fakeDecode), with the entry in its padding.
type entryEvent struct {
	_       structs.HostLayout
	Hdr     EventHeader
	Verdict uint8
	_       [3]uint8
	Entry   uint32
}

// fakeEntryEvent is an event of entry from pid that its decoder judges v.
func fakeEntryEvent(pid, entry uint32, v Verdict) []byte {
	ev := entryEvent{Verdict: uint8(v), Entry: entry}
	ev.Hdr.Kind, ev.Hdr.Pid, ev.Hdr.StartNs, ev.Hdr.EndNs = kindEntries, pid, 1000000, 3000000
	return raw(&ev)
}

// detachedEntry is one call of fakeEntries.DetachEntry.
type detachedEntry struct {
	pid    int
	entry  uint32
	reason string
}

// fakeEntries is the stand-in family's Entries: it reads an event's entry
// and records what the manager tells it; DetachEntry detaches the entries
// in attached (by pid), once each.
type fakeEntries struct {
	attached  map[int]map[uint32]bool
	detached  []detachedEntry
	processes []int
}

func (f *fakeEntries) Loaded(*Handle) {}

func (f *fakeEntries) Entry(raw []byte) uint32 {
	return (*entryEvent)(unsafe.Pointer(&raw[0])).Entry
}

func (f *fakeEntries) DetachEntry(pid int, entry uint32, reason string) (ProbeStatus, bool) {
	if !f.attached[pid][entry] {
		return ProbeStatus{}, false
	}
	delete(f.attached[pid], entry)
	f.detached = append(f.detached, detachedEntry{pid, entry, reason})
	return ProbeStatus{Family: fmt.Sprintf("entries:%d", entry), Error: reason}, true
}

func (f *fakeEntries) ProcessDetached(pid int)         { f.processes = append(f.processes, pid) }
func (f *fakeEntries) BinaryForgotten(*symbols.Binary) {}
