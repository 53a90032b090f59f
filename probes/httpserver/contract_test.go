package httpserver

import (
	"unsafe"

	"testing"

	"github.com/blindspot-dev/blindspot/probes"
	"github.com/blindspot-dev/blindspot/probes/internal/bpfcheck"
)

// contract is what the family's Go side expects of its BPF objects.
func contract() bpfcheck.Family {
	f := Family()
	var programs []string
	for _, p := range f.Probes {
		programs = append(programs, p.Program)
	}
	return bpfcheck.Family{
		Name: f.Name, Source: "http_server.c", Stem: "bpf", Load: f.Spec,
		Event: "http_server_event", GoEvent: bpfHttpServerEvent{},
		ConfigMap: f.ConfigMap, Config: bpfHttpServerOffsets{},
		StartMap: f.StartMap, InFlightMaps: f.InFlightMaps, Programs: programs,
		Types: map[string]any{
			"event_header": probes.EventHeader{}, "goroutine_key": probes.GoroutineKey{},
		},
		LostEntries: probes.MaxKinds,
		Constants: []bpfcheck.Constant{
			{Name: "FAMILY_HTTP_SERVER", Value: kindHTTPServer},
			{Name: "HTTP_FLAG_PANIC", Value: httpFlagPanic},
			{Name: "HTTP_FLAG_STATUS", Value: httpFlagStatus},
			{Name: "HTTP_FLAG_HTTP2", Value: httpFlagHTTP2},
			{Name: "HTTP_ROUTER_GIN", Value: httpRouterGin},
			{Name: "HTTP_ROUTER_CHI", Value: httpRouterChi},
			{Name: "HTTP_ROUTER_ECHO", Value: httpRouterEcho},
			{Name: "HTTP_ROUTER_MUX", Value: httpRouterMux},
		},
	}
}

// The family's Go types, programs, maps and constants match its objects
// and its C source (see probes/contract_test.go for what is checked where).
func TestContract(t *testing.T) {
	bpfcheck.Check(t, contract())
	bpfcheck.CheckInFlightHashes(t, contract())
	if f := Family(); f.Kind != kindHTTPServer {
		t.Errorf("Family().Kind = %d, want %d", f.Kind, kindHTTPServer)
	}
}

// The hand-written Go types the manager (and goerror) read in place of the
// types bpf2go generated for this family are the same, field by field: Go
// converts no struct with a blank field between packages.
func TestSharedTypesAreTheGeneratedOnes(t *testing.T) {
	for _, pair := range [][2]any{
		{probes.EventHeader{}, bpfHttpServerEvent{}.Hdr},
		{probes.GoroutineKey{}, bpfGoroutineKey{}},
	} {
		for _, e := range bpfcheck.SameLayout(pair[0], pair[1]) {
			t.Error(e)
		}
	}
}

// The event's window (HTTP_WINDOW_MAX of bpf/http_server.c: its path and
// pattern) is what the programs take it for: windowMax bytes, 8-aligned,
// path and pattern adjacent.
func TestWindowRoom(t *testing.T) {
	var ev bpfHttpServerEvent
	path, pattern := unsafe.Offsetof(ev.Path), unsafe.Offsetof(ev.Pattern)
	if path%8 != 0 || pattern != path+uintptr(len(ev.Path)) || uint64(len(ev.Path)+len(ev.Pattern)) != windowMax {
		t.Errorf("path at %d (%d bytes), pattern at %d (%d bytes): not an 8-aligned window of %d bytes",
			path, len(ev.Path), pattern, len(ev.Pattern), windowMax)
	}
}
