package dbsql

import (
	"testing"

	"github.com/blindspot-dev/blindspot/probes"
	"github.com/blindspot-dev/blindspot/probes/goerror"
	"github.com/blindspot-dev/blindspot/probes/internal/bpfcheck"
)

// contract is what the family's Go side expects of its BPF objects.
func contract() bpfcheck.Family {
	f := Family(nil, nil)
	var programs []string
	for _, p := range f.Probes {
		programs = append(programs, p.Program)
	}
	return bpfcheck.Family{
		Name: f.Name, Source: "db.c", Stem: "bpf", Load: f.Spec,
		Event: "db_event", GoEvent: bpfDbEvent{},
		ConfigMap: f.ConfigMap, Config: bpfDbOffsets{},
		StartMap: f.StartMap, InFlightMaps: f.InFlightMaps, Programs: programs,
		Types: map[string]any{
			"event_header": probes.EventHeader{}, "goroutine_key": probes.GoroutineKey{},
			"go_error": goerror.Error{},
		},
		LostEntries: probes.MaxKinds,
		Constants: []bpfcheck.Constant{
			{Name: "FAMILY_DB", Value: kindDB},
			{Name: "DB_OP_QUERY", Value: dbOpQuery},
			{Name: "DB_OP_BEGIN", Value: dbOpBegin},
			{Name: "DB_OP_COMMIT", Value: dbOpCommit},
			{Name: "DB_OP_ROLLBACK", Value: dbOpRollback},
			{Name: "DB_OP_WAIT", Value: dbOpWait},
		},
	}
}

// The family's Go types, programs, maps and constants match its objects
// and its C source (see probes/contract_test.go for what is checked where).
func TestContract(t *testing.T) {
	bpfcheck.Check(t, contract())
	bpfcheck.CheckInFlightHashes(t, contract())
	if f := Family(nil, nil); f.Kind != kindDB {
		t.Errorf("Family().Kind = %d, want %d", f.Kind, kindDB)
	}
}

// The hand-written Go types the manager (and goerror) read in place of the
// types bpf2go generated for this family are the same, field by field: Go
// converts no struct with a blank field between packages.
func TestSharedTypesAreTheGeneratedOnes(t *testing.T) {
	for _, pair := range [][2]any{
		{probes.EventHeader{}, bpfDbEvent{}.Hdr},
		{probes.GoroutineKey{}, bpfGoroutineKey{}},
		{goerror.Error{}, bpfDbEvent{}.Err},
	} {
		for _, e := range bpfcheck.SameLayout(pair[0], pair[1]) {
			t.Error(e)
		}
	}
}
