package grpcserver

import (
	"bytes"
	"debug/elf"
	"os"
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

// Without module information, the release is read from grpc-go's
// user-agent constant in .rodata: this test's own executable, its
// .rodata scrubbed of the prefix, then given each case's text.
func TestVersionFromUserAgent(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	orig, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	ef, err := elf.NewFile(bytes.NewReader(orig))
	if err != nil {
		t.Fatal(err)
	}
	ro := ef.Section(".rodata")
	if ro == nil {
		t.Fatal("test executable has no .rodata")
	}
	start, end := ro.Offset, ro.Offset+ro.Size
	ef.Close()
	// Built at run time: a constant would land in .rodata itself.
	ua := strings.Join([]string{"grpc", "go/"}, "-")
	for _, c := range []struct{ name, text, v, err string }{
		{"found", ua + "1.64.0x", "v1.64.0", ""},
		{"found twice", ua + "1.81.1" + ua + "1.81.1", "v1.81.1", ""},
		{"out of range", ua + "1.33.3grpc-trace-bin", "v1.33.3",
			"google.golang.org/grpc v1.33.3 (no module information: read from its user-agent string grpc-go/1.33.3): only v1.50 to v1.85 are checked"},
		{"absent", "", "", "google.golang.org/grpc version unknown (no module information, and no grpc-go/ user-agent string in read-only data): probe signatures unproven"},
		{"two releases", ua + "1.64.0x" + ua + "1.65.1x", "",
			"google.golang.org/grpc version unknown (no module information, and user-agent strings of two releases in read-only data: grpc-go/1.64.0 and grpc-go/1.65.1): probe signatures unproven"},
		{"malformed", ua + "1.64x", "", `google.golang.org/grpc version unknown (no module information, and a malformed user-agent string in read-only data: grpc-go/"1.64x"): probe signatures unproven`},
	} {
		t.Run(c.name, func(t *testing.T) {
			data := bytes.Clone(orig)
			ro := data[start:end]
			for i := bytes.Index(ro, []byte(ua)); i >= 0; i = bytes.Index(ro, []byte(ua)) {
				ro[i] = 'X'
			}
			copy(ro, c.text)
			b, err := symbols.NewBinary(bytes.NewReader(data), "patched")
			if err != nil {
				t.Fatal(err)
			}
			b.Deps = map[string]string{} // no module information
			v, _, verr := Version(b)
			cerr := CheckVersion(b)
			switch {
			case v != c.v:
				t.Errorf("version %q, want %q (%v)", v, c.v, verr)
			case c.err == "" && cerr != nil:
				t.Errorf("refused: %v", cerr)
			case c.err != "" && (cerr == nil || cerr.Error() != c.err):
				t.Errorf("CheckVersion: %v\nwant: %s", cerr, c.err)
			}
		})
	}
}

// FuzzDecode: arbitrary ring events never panic the decoder nor make it
// allocate beyond a bound.
func FuzzDecode(f *testing.F) {
	r := decodetest.NewRig(Metrics(), func(agg *aggregator.Aggregator) *probes.Family { return Family(agg) })
	r.Fuzz(f, serverEvent(nil),
		serverEvent(func(e *bpfGrpcServerEvent) { e.Hdr.Flags, e.Code = grpcsFlagStatus|grpcsFlagUnanswered, 14 }),
		serverEvent(func(e *bpfGrpcServerEvent) { e.Hdr.Flags, e.Code = grpcsFlagStatus, 5 }))
}
