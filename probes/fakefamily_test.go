package probes

import (
	"structs"
	"unsafe"

	"github.com/blindspot-dev/blindspot/aggregator"
)

// The manager's machinery (readers, windows, the invalid-event policy) is
// tested here with stand-in families whose decoder returns the verdict
// each event carries; every real family tests its own decoder in its own
// package (probes/httpserver, ...), and the business functions' decoder,
// the manager's own, is tested beside these.
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
