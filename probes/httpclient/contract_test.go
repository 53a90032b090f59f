package httpclient

import (
	"net/http"
	"os"
	"testing"
	"unsafe"

	"github.com/blindspot-dev/blindspot/probes"
	"github.com/blindspot-dev/blindspot/probes/goerror"
	"github.com/blindspot-dev/blindspot/probes/internal/bpfcheck"
	"github.com/blindspot-dev/blindspot/probes/internal/windowtest"
	"github.com/blindspot-dev/blindspot/symbols"
)

// The test binary links net/http's client (Response, URL): its types are
// what TestWindowsHoldTheFields reads.
var _ = http.Get

// contract is what the family's Go side expects of its BPF objects.
func contract() bpfcheck.Family {
	f := Family(nil)
	var programs []string
	for _, p := range f.Probes {
		programs = append(programs, p.Program)
	}
	return bpfcheck.Family{
		Name: f.Name, Source: "http_client.c", Stem: "bpf", Load: f.Spec,
		Event: "http_client_event", GoEvent: bpfHttpClientEvent{},
		ConfigMap: f.ConfigMap, Config: bpfHttpClientOffsets{},
		StartMap: f.StartMap, Programs: programs,
		Types: map[string]any{
			"event_header": probes.EventHeader{}, "goroutine_key": probes.GoroutineKey{},
			"go_error": goerror.Error{},
		},
		LostEntries: probes.MaxKinds,
		Constants: []bpfcheck.Constant{
			{Name: "FAMILY_HTTP_CLIENT", Value: kindHTTPClient},
			{Name: "HTTPC_FLAG_RESPONSE", Value: httpcFlagResponse},
		},
	}
}

// The family's Go types, programs, maps and constants match its objects
// and its C source (see probes/contract_test.go for what is checked where).
func TestContract(t *testing.T) {
	bpfcheck.Check(t, contract())
	if f := Family(nil); f.Kind != kindHTTPClient {
		t.Errorf("Family().Kind = %d, want %d", f.Kind, kindHTTPClient)
	}
}

// The hand-written Go types the manager (and goerror) read in place of the
// types bpf2go generated for this family are the same, field by field: Go
// converts no struct with a blank field between packages.
func TestSharedTypesAreTheGeneratedOnes(t *testing.T) {
	for _, pair := range [][2]any{
		{probes.EventHeader{}, bpfHttpClientEvent{}.Hdr},
		{probes.GoroutineKey{}, bpfGoroutineKey{}},
		{goerror.Error{}, bpfHttpClientEvent{}.Err},
	} {
		for _, e := range bpfcheck.SameLayout(pair[0], pair[1]) {
			t.Error(e)
		}
	}
}

// The event's window (HTTPC_WINDOW_MAX of bpf/http_client.c: its scheme
// and host) is what the program takes it for: windowMax bytes, 8-aligned,
// scheme and host adjacent.
func TestWindowRoom(t *testing.T) {
	var ev bpfHttpClientEvent
	scheme, host := unsafe.Offsetof(ev.Scheme), unsafe.Offsetof(ev.Host)
	if scheme%8 != 0 || host != scheme+uintptr(len(ev.Scheme)) || uint64(len(ev.Scheme)+len(ev.Host)) != windowMax {
		t.Errorf("scheme at %d (%d bytes), host at %d (%d bytes): not an 8-aligned window of %d bytes",
			scheme, len(ev.Scheme), host, len(ev.Host), windowMax)
	}
}

// For a real program (this test, which links net/http's client), every
// field the program takes from a window lies inside it, and every window
// fits the event's room.
func TestWindowsHoldTheFields(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin, err := symbols.Open(exe)
	if err != nil {
		t.Fatal(err)
	}
	defer bin.Close()
	v, err := httpClientOffsets(bin)
	if err != nil {
		t.Fatal(err)
	}
	o := v.(*bpfHttpClientOffsets)
	windowtest.Check(t, windowMax,
		windowtest.W("response", o.RespWinOff, o.RespWinLen, windowtest.F("StatusCode", o.RespStatus, 8), windowtest.F("ProtoMajor", o.RespProtoMajor, 8), windowtest.F("ProtoMinor", o.RespProtoMinor, 8)),
		windowtest.W("URL", o.UrlWinOff, o.UrlWinLen, windowtest.F("Scheme", o.UrlScheme, 16), windowtest.F("Host", o.UrlHost, 16)),
	)
}
