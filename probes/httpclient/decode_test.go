package httpclient

import (
	"strings"
	"testing"

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
	return decodetest.NewRig(Metrics(), func(agg *aggregator.Aggregator) *probes.Family { return Family(agg) })
}

// A plausible event, changed by f.
func clientEvent(f func(*bpfHttpClientEvent)) []byte {
	var ev bpfHttpClientEvent
	ev.Hdr.Kind, ev.Hdr.Flags, ev.Hdr.Pid, ev.Hdr.StartNs, ev.Hdr.EndNs = kindHTTPClient, httpcFlagResponse, 42, 1000000, 3000000
	ev.Status = 200
	ev.ProtoMajor, ev.ProtoMinor = 1, 1
	ev.MethodLen = setChars(ev.Method[:], "GET")
	ev.SchemeLen = setChars(ev.Scheme[:], "http")
	ev.HostLen = uint16(setChars(ev.Host[:], "payments.internal:8443"))
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
	cases := decodetest.Cases{
		// HTTP client.
		{"client status 257", clientEvent(func(e *bpfHttpClientEvent) { e.Status = 257 }), probes.InvalidPeerStatus, "status"},
		{"client status 999", clientEvent(func(e *bpfHttpClientEvent) { e.Status = 999 }), probes.InvalidPeerStatus, "status"},
		{"client status 12240", clientEvent(func(e *bpfHttpClientEvent) { e.Status = 12240 }), probes.InvalidStatus, "status"},
		{"client status 0x7fff", clientEvent(func(e *bpfHttpClientEvent) { e.Status = 0x7fff }), probes.InvalidStatus, "status"},
		{"client status 0 with a response", clientEvent(func(e *bpfHttpClientEvent) { e.Status = 0 }), probes.InvalidStatus, "status"},
		{"client method NUL", clientEvent(func(e *bpfHttpClientEvent) { e.MethodLen = setChars(e.Method[:], "G\x00T") }), probes.InvalidMethod, "method"},
		{"client host invalid UTF-8", clientEvent(func(e *bpfHttpClientEvent) { e.HostLen = uint16(setChars(e.Host[:], "pay\xffments:80")) }), probes.InvalidUTF8, "utf8"},
		{"client host with control", clientEvent(func(e *bpfHttpClientEvent) { e.HostLen = uint16(setChars(e.Host[:], "pay\x01ments")) }), probes.InvalidUTF8, "utf8"},
		{"client scheme garbage", clientEvent(func(e *bpfHttpClientEvent) { e.SchemeLen = setChars(e.Scheme[:], "h\xfe") }), probes.InvalidUTF8, "utf8"},
		{"client host cut by the probe", clientEvent(func(e *bpfHttpClientEvent) {
			e.HostLen = uint16(setChars(e.Host[:], strings.Repeat("a", len(e.Host))))
			e.HostLen = uint16(len(e.Host) + 6) // the Go string was longer than the buffer
		}), probes.InvalidHost, "host"},
		{"client port 0", clientEvent(func(e *bpfHttpClientEvent) { e.HostLen = uint16(setChars(e.Host[:], "payments.internal:0")) }), probes.InvalidPort, "port"},
		{"client port 65536", clientEvent(func(e *bpfHttpClientEvent) { e.HostLen = uint16(setChars(e.Host[:], "payments.internal:65536")) }), probes.InvalidPort, "port"},
		{"client port not a number", clientEvent(func(e *bpfHttpClientEvent) { e.HostLen = uint16(setChars(e.Host[:], "[::1]:http")) }), probes.InvalidPort, "port"},
		{"client end before start", clientEvent(func(e *bpfHttpClientEvent) { e.Hdr.StartNs, e.Hdr.EndNs = 3000000, 1000000 }), probes.InvalidDuration, "duration"},
		{"client version 1.10", clientEvent(func(e *bpfHttpClientEvent) { e.ProtoMinor = 10 }), probes.InvalidProto, "proto"},
		{"client version 255.0", clientEvent(func(e *bpfHttpClientEvent) { e.ProtoMajor, e.ProtoMinor = 255, 0 }), probes.InvalidProto, "proto"},
	}
	r.Refuses(t, cases)
}

// What a correctly read program sends is still decoded.
func TestDecodeAcceptsPlausibleEdges(t *testing.T) {
	r := newDecoderRig(t)
	for _, c := range []struct {
		name string
		raw  []byte
	}{
		{"client no response", clientEvent(func(e *bpfHttpClientEvent) { e.Hdr.Flags, e.Status = 0, 0 })},
		{"client empty method", clientEvent(func(e *bpfHttpClientEvent) { e.MethodLen = 0 })},
		{"client host without port", clientEvent(func(e *bpfHttpClientEvent) { e.HostLen = uint16(setChars(e.Host[:], "example.com")) })},
	} {
		if v := r.Decode(r.Sh, r.TID, c.raw); v != probes.Decoded {
			t.Errorf("%s: verdict %d, want decoded", c.name, v)
		}
	}
	if got := r.Observed(); got["http_client_request_duration_seconds"] != 3 {
		t.Errorf("http_client_request_duration_seconds: %d observations, want 3 (all: %v)", got["http_client_request_duration_seconds"], got)
	}
	r.LabelsValid(t)
}

// The decoder folds an event into a shard without allocating once its
// labels have been seen, and refuses an implausible one without allocating
// either: the reader's hot path.
func TestDecodeDoesNotAllocate(t *testing.T) {
	r := newDecoderRig(t)
	var cl bpfHttpClientEvent
	cl.Hdr.Kind, cl.Hdr.Flags, cl.Hdr.Pid, cl.Hdr.EndNs = kindHTTPClient, httpcFlagResponse, 42, 2500000
	cl.Status = 503
	cl.MethodLen = setChars(cl.Method[:], "POST")
	cl.SchemeLen = setChars(cl.Scheme[:], "http")
	cl.HostLen = uint16(setChars(cl.Host[:], "payments.internal:8443"))
	badCl := cl
	badCl.HostLen = uint16(setChars(badCl.Host[:], "payments.internal:0"))
	for _, c := range []struct {
		name string
		raw  []byte
		want probes.Verdict
	}{
		{"http_client", raw(&cl), probes.Decoded},
		{"http_client invalid", raw(&badCl), probes.InvalidPort},
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
		if p.Metric == httpClientDuration && (p.Labels[0] != "POST" || p.Labels[1] != "503" || p.Labels[2] != "payments.internal" || p.Labels[3] != "8443") {
			t.Errorf("client labels %v", p.Labels)
		}
	}
	// The valid event was decoded once, then 201 times in AllocsPerRun (a
	// warm-up and 200 measured runs); the invalid one never.
	if want := uint64(1 + 201); n != want {
		t.Errorf("%d observations, want %d", n, want)
	}
}

// network_protocol_version is the response's: 1.0, 1.1, 2 as read; absent
// without a response, and for 0.x (no version rather than a wrong one).
func TestDecodeVersion(t *testing.T) {
	r := newDecoderRig(t)
	for _, f := range []func(*bpfHttpClientEvent){
		func(e *bpfHttpClientEvent) { e.ProtoMinor = 0 },
		nil,
		nil,
		func(e *bpfHttpClientEvent) { e.ProtoMajor, e.ProtoMinor = 2, 0 },
		func(e *bpfHttpClientEvent) { e.Hdr.Flags, e.Status, e.ProtoMajor, e.ProtoMinor = 0, 0, 0, 0 },
		func(e *bpfHttpClientEvent) { e.ProtoMajor, e.ProtoMinor = 0, 9 },
	} {
		if v := r.Decode(r.Sh, r.TID, clientEvent(f)); v != probes.Decoded {
			t.Fatalf("verdict %d, want decoded", v)
		}
	}
	got := map[string]uint64{}
	for _, p := range r.Agg.Snapshot() {
		got[p.Labels[1]+" "+p.Labels[5]] += p.Count
	}
	want := map[string]uint64{"200 1.0": 1, "200 1.1": 2, "200 2": 1, " ": 1, "200 ": 1}
	if len(got) != len(want) {
		t.Errorf("series %v, want %v", got, want)
	}
	for k, n := range want {
		if got[k] != n {
			t.Errorf("%q: %d, want %d (all: %v)", k, got[k], n, got)
		}
	}
	if l := httpClientDuration.Labels; l[5] != "network_protocol_version" {
		t.Errorf("labels %v", l)
	}
}

// FuzzDecode: arbitrary ring events never panic the decoder nor make it
// allocate beyond a bound.
func FuzzDecode(f *testing.F) {
	newDecoderRig(f).Fuzz(f, clientEvent(nil))
}

// BenchmarkDecode is the decoder's and the aggregator's share of one
// client event on the steady path (labels and series seen before).
func BenchmarkDecode(b *testing.B) {
	r := newDecoderRig(b)
	var evs [][]byte
	for _, c := range []struct {
		method, scheme, host string
		status               uint16
	}{
		{"GET", "http", "inventory.internal:8080", 200},
		{"POST", "https", "payments.example.com", 503},
		{"GET", "http", "inventory.internal:8080", 404},
		{"PUT", "https", "[::1]:8443", 200},
	} {
		evs = append(evs, clientEvent(func(e *bpfHttpClientEvent) {
			e.Status = c.status
			e.MethodLen = setChars(e.Method[:], c.method)
			e.SchemeLen = setChars(e.Scheme[:], c.scheme)
			e.HostLen = uint16(setChars(e.Host[:], c.host))
		}))
	}
	r.Benchmark(b, evs)
}
