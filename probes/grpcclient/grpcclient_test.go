package grpcclient

import (
	"strings"
	"testing"

	"github.com/blindspot-dev/blindspot/aggregator"
	"github.com/blindspot-dev/blindspot/probes"
	"github.com/blindspot-dev/blindspot/probes/internal/decodetest"
	"github.com/blindspot-dev/blindspot/probes/internal/eventbytes"
)

func TestSplitTarget(t *testing.T) {
	cases := []struct {
		target, addr, port string
		ok                 bool
	}{
		{"localhost:50051", "localhost", "50051", true},
		{"dns:///payments.internal:443", "payments.internal", "443", true},
		{"dns://8.8.8.8/payments.internal:443", "payments.internal", "443", true},
		{"passthrough:///10.0.0.7:9000", "10.0.0.7", "9000", true},
		{"[::1]:50051", "::1", "50051", true},
		{"dns:///[2001:db8::1]:8080", "2001:db8::1", "8080", true},
		{"payments.internal", "payments.internal", "", true},
		{"unix:///run/app.sock", "/run/app.sock", "", true},
		{"unix:relative.sock", "relative.sock", "", true},
		{"unix-abstract:app", "app", "", true},
		{"localhost:0", "", "", false},
		{"localhost:http", "", "", false},
		{"dns:///", "", "", false},
		{"", "", "", false},
	}
	for _, c := range cases {
		a, p, ok := SplitTarget(c.target)
		if a != c.addr || p != c.port || ok != c.ok {
			t.Errorf("SplitTarget(%q) = %q, %q, %v; want %q, %q, %v", c.target, a, p, ok, c.addr, c.port, c.ok)
		}
	}
}

// A plausible event of a call that ended without error, changed by f.
func clientEvent(f func(*bpfGrpcClientEvent)) []byte {
	var ev bpfGrpcClientEvent
	ev.Hdr.Kind, ev.Hdr.Pid, ev.Hdr.StartNs, ev.Hdr.EndNs = kindGRPCClient, 42, 1000000, 3000000
	ev.MethodLen = uint16(eventbytes.SetChars(ev.Method[:], "/shop.Cart/Add"))
	ev.TargetLen = uint16(eventbytes.SetChars(ev.Target[:], "dns:///cart.internal:8443"))
	if f != nil {
		f(&ev)
	}
	return eventbytes.Raw(&ev)
}

func newRig() *decodetest.Rig {
	return decodetest.NewRig(Metrics(), func(agg *aggregator.Aggregator) *probes.Family { return Family(agg) })
}

func TestDecode(t *testing.T) {
	r := newRig()
	if v := r.Decode(r.Sh, r.TID, clientEvent(nil)); v != probes.Decoded {
		t.Fatalf("verdict %v, want Decoded", v)
	}
	var got []string
	for _, p := range r.Agg.Snapshot() {
		got = append(got, p.Metric.Name+" "+strings.Join(p.Labels, ","))
	}
	want := "rpc_client_call_duration_seconds grpc,shop.Cart,Add,0,cart.internal,8443"
	if len(got) != 1 || got[0] != want {
		t.Errorf("series %q, want %q", got, want)
	}
}

// Implausible events are refused under the right reason.
func TestDecodeRefusesImplausibleEvents(t *testing.T) {
	r := newRig()
	r.Refuses(t, decodetest.Cases{
		{"end before start", clientEvent(func(e *bpfGrpcClientEvent) { e.Hdr.EndNs = 10 }), probes.InvalidDuration, "duration"},
		{"method not /service/method", clientEvent(func(e *bpfGrpcClientEvent) { e.MethodLen = uint16(eventbytes.SetChars(e.Method[:], "Add")) }), probes.InvalidMethod, "method"},
		{"method cut", clientEvent(func(e *bpfGrpcClientEvent) { e.MethodLen = uint16(len(e.Method) + 1) }), probes.InvalidMethod, "method"},
		{"method invalid UTF-8", clientEvent(func(e *bpfGrpcClientEvent) { e.MethodLen = uint16(eventbytes.SetChars(e.Method[:], "/a.B/\xff")) }), probes.InvalidUTF8, "utf8"},
		{"target port 0", clientEvent(func(e *bpfGrpcClientEvent) { e.TargetLen = uint16(eventbytes.SetChars(e.Target[:], "cart:0")) }), probes.InvalidPort, "port"},
		{"target with control", clientEvent(func(e *bpfGrpcClientEvent) { e.TargetLen = uint16(eventbytes.SetChars(e.Target[:], "ca\x01rt:1")) }), probes.InvalidUTF8, "utf8"},
		{"short", make([]byte, 8), probes.Malformed, ""},
	})
}

// FuzzDecode: arbitrary ring events never panic the decoder nor make it
// allocate beyond a bound.
func FuzzDecode(f *testing.F) {
	newRig().Fuzz(f, clientEvent(nil),
		clientEvent(func(e *bpfGrpcClientEvent) {
			e.TargetLen = uint16(eventbytes.SetChars(e.Target[:], "unix:///run/cart.sock"))
		}))
}
