package probes

import (
	"os"
	"reflect"
	"testing"

	"github.com/blindspot-dev/blindspot/probes/internal/testserver"
	"github.com/blindspot-dev/blindspot/symbols"
)

func requireBPF(t *testing.T)                        { testserver.RequireBPF(t) }
func startServer(t *testing.T) (int, string, string) { return testserver.Start(t) }

// A second process of an executable is attached from the plan the first
// one's made (what the family's programs need and where its probes go),
// not by reading the binary again; Forget drops the plan with the binary.
func TestPlanComputedOncePerBinary(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin, err := symbols.Open(self)
	if err != nil {
		t.Fatal(err)
	}
	defer bin.Close()
	configured := 0
	f := &loadedFamily{Family: &Family{
		Name:      "plan",
		Configure: func(*symbols.Binary) (any, error) { configured++; return configured, nil },
		Probes:    []Probe{{Function: "main.main", Program: "prog"}},
	}, configs: map[*symbols.Binary]configResult{}}
	m := &Manager{families: []*loadedFamily{f}}
	first := f.configFor(bin)
	if first.err != nil || len(first.offsets) != 1 {
		t.Fatalf("plan: %+v", first)
	}
	second := f.configFor(bin)
	if configured != 1 || second.value != first.value || !reflect.DeepEqual(second.offsets, first.offsets) {
		t.Fatalf("second process: configured %d times, plan %+v, first %+v", configured, second, first)
	}
	m.Forget(bin)
	if f.configFor(bin); configured != 2 {
		t.Errorf("after Forget: configured %d times, want 2", configured)
	}
}

// Rings keep 2 MiB each on small machines and share a 16 MiB budget on
// large ones, never under 256 KiB each.
func TestDefaultRingBytes(t *testing.T) {
	for cpus, want := range map[int]int{0: 2 << 20, 1: 2 << 20, 2: 2 << 20, 8: 2 << 20, 12: 1 << 20, 16: 1 << 20, 32: 512 << 10, 64: 256 << 10, 256: 256 << 10} {
		if got := DefaultRingBytes(cpus); got != want {
			t.Errorf("DefaultRingBytes(%d) = %d, want %d", cpus, got, want)
		}
		if got := DefaultRingBytes(cpus); cpus > 0 && cpus <= 64 && got*cpus > ringBudgetByte {
			t.Errorf("%d CPUs: %d bytes of rings, over the budget", cpus, got*cpus)
		}
	}
}
