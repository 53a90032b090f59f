package grpcclient

import (
	"testing"

	"github.com/blindspot-dev/blindspot/probes"
	"github.com/blindspot-dev/blindspot/probes/goerror"
	"github.com/blindspot-dev/blindspot/probes/internal/bpfcheck"
)

// The family's Go types, programs, maps and constants match its objects
// and its C source.
func TestContract(t *testing.T) {
	f := Family(nil)
	var programs []string
	for _, p := range f.Probes {
		programs = append(programs, p.Program)
	}
	bpfcheck.Check(t, bpfcheck.Family{
		Name: f.Name, Source: "grpc_client.c", Stem: "bpf", Load: f.Spec,
		Event: "grpc_client_event", GoEvent: bpfGrpcClientEvent{},
		ConfigMap: f.ConfigMap, Config: bpfGrpcClientOffsets{},
		StartMap: f.StartMap, Programs: programs,
		Types:       map[string]any{"event_header": probes.EventHeader{}, "goroutine_key": probes.GoroutineKey{}, "go_error": goerror.Error{}},
		LostEntries: probes.MaxKinds,
		Constants:   []bpfcheck.Constant{{Name: "FAMILY_GRPC_CLIENT", Value: kindGRPCClient}},
	})
	if f.Kind != kindGRPCClient {
		t.Errorf("Family().Kind = %d, want %d", f.Kind, kindGRPCClient)
	}
}
