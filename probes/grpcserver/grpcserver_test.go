package grpcserver

import (
	"strings"
	"testing"

	"github.com/blindspot-dev/blindspot/aggregator"
	"github.com/blindspot-dev/blindspot/probes"
	"github.com/blindspot-dev/blindspot/probes/internal/decodetest"
	"github.com/blindspot-dev/blindspot/probes/internal/eventbytes"
	"github.com/blindspot-dev/blindspot/symbols"
)

func TestSplitMethod(t *testing.T) {
	cases := []struct{ full, svc, m string }{
		{"/shop.Cart/Add", "shop.Cart", "Add"},
		{"/grpc.health.v1.Health/Check", "grpc.health.v1.Health", "Check"},
		{"/Echo/Echo", "Echo", "Echo"},
		{"shop.Cart/Add", "", ""},
		{"/shop.Cart/", "", ""},
		{"//Add", "", ""},
		{"/Add", "", ""},
		{"", "", ""},
	}
	for _, c := range cases {
		svc, m, ok := SplitMethod([]byte(c.full))
		if string(svc) != c.svc || string(m) != c.m || ok != (c.svc != "") {
			t.Errorf("SplitMethod(%q) = %q, %q, %v; want %q, %q", c.full, svc, m, ok, c.svc, c.m)
		}
	}
}

// Only the grpc-go releases whose sources were read are accepted.
func TestCheckVersion(t *testing.T) {
	for v, ok := range map[string]bool{
		"v1.50.0": true, "v1.60.1": true, "v1.85.0": true, "v1.70.0-pre": true,
		"v1.49.0": false, "v1.86.0": false, "v2.0.0": false, "(devel)": false, "": false,
	} {
		b := &symbols.Binary{Deps: map[string]string{}}
		if v != "" {
			b.Deps["google.golang.org/grpc"] = v
		}
		if err := CheckVersion(b); (err == nil) != ok {
			t.Errorf("CheckVersion(%q) = %v, want accepted %v", v, err, ok)
		}
	}
}

func serverEvent(f func(*bpfGrpcServerEvent)) []byte {
	var ev bpfGrpcServerEvent
	ev.Hdr.Kind, ev.Hdr.Pid, ev.Hdr.StartNs, ev.Hdr.EndNs = kindGRPCServer, 42, 1000000, 3000000
	ev.MethodLen = uint16(eventbytes.SetChars(ev.Method[:], "/shop.Cart/Add"))
	if f != nil {
		f(&ev)
	}
	return eventbytes.Raw(&ev)
}

// Implausible events are refused; an event whose writer cannot be told (no
// binary to resolve its return address in) exports nothing.
func TestDecodeRefusesImplausibleEvents(t *testing.T) {
	r := decodetest.NewRig(Metrics(), func(agg *aggregator.Aggregator) *probes.Family { return Family(agg) })
	r.Refuses(t, decodetest.Cases{
		{"end before start", serverEvent(func(e *bpfGrpcServerEvent) { e.Hdr.EndNs = 10 }), probes.InvalidDuration, "duration"},
		{"code 17", serverEvent(func(e *bpfGrpcServerEvent) { e.Hdr.Flags, e.Code = grpcsFlagStatus, 17 }), probes.InvalidStatus, "status"},
		{"code unreadable", serverEvent(func(e *bpfGrpcServerEvent) { e.Hdr.Flags, e.Code = grpcsFlagStatus, 0xffffffff }), probes.InvalidStatus, "status"},
		{"caller unknown", serverEvent(nil), probes.Malformed, ""},
		{"short", make([]byte, 8), probes.Malformed, ""},
	})
}

// A unary call ended in processUnaryRPC without a status (its answer
// failed on a closed connection) is a registered method's, with the code
// the BPF program set: no return address to resolve.
func TestDecodeUnanswered(t *testing.T) {
	r := decodetest.NewRig(Metrics(), func(agg *aggregator.Aggregator) *probes.Family { return Family(agg) })
	ev := serverEvent(func(e *bpfGrpcServerEvent) { e.Hdr.Flags, e.Code = grpcsFlagStatus|grpcsFlagUnanswered, 14 })
	if v := r.Decode(r.Sh, r.TID, ev); v != probes.Decoded {
		t.Fatalf("verdict %v, want Decoded", v)
	}
	var got []string
	for _, p := range r.Agg.Snapshot() {
		got = append(got, p.Metric.Name+" "+strings.Join(p.Labels, ","))
	}
	want := "rpc_server_call_duration_seconds grpc,shop.Cart,Add,14"
	if len(got) != 1 || got[0] != want {
		t.Errorf("series %q, want %q", got, want)
	}
}
