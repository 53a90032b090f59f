package grpcserver

import (
	"testing"

	"github.com/blindspot-dev/blindspot/probes"
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
		Name: f.Name, Source: "grpc_server.c", Stem: "bpf", Load: f.Spec,
		Event: "grpc_server_event", GoEvent: bpfGrpcServerEvent{},
		ConfigMap: f.ConfigMap, Config: bpfGrpcServerOffsets{},
		StartMap: f.StartMap, Programs: programs,
		Types:       map[string]any{"event_header": probes.EventHeader{}, "goroutine_key": probes.GoroutineKey{}},
		LostEntries: probes.MaxKinds,
		Constants:   []bpfcheck.Constant{{Name: "FAMILY_GRPC_SERVER", Value: kindGRPCServer}, {Name: "GRPCS_FLAG_STATUS", Value: grpcsFlagStatus}, {Name: "GRPCS_FLAG_UNANSWERED", Value: grpcsFlagUnanswered}},
	})
	if f.Kind != kindGRPCServer {
		t.Errorf("Family().Kind = %d, want %d", f.Kind, kindGRPCServer)
	}
}
