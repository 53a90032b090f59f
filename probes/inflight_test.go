package probes

import (
	"encoding/binary"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/blindspot-dev/blindspot/aggregator"
)

// inflightSpec is a collection of maps only, shaped like a family's: the
// rings and lost counters the manager replaces, a start map and another map
// of calls in flight (waits, routes) smaller than the start map.
func inflightSpec() (*ebpf.CollectionSpec, error) {
	return &ebpf.CollectionSpec{Maps: map[string]*ebpf.MapSpec{
		"rings": {Name: "rings", Type: ebpf.ArrayOfMaps, KeySize: 4, ValueSize: 4, MaxEntries: 1,
			InnerMap: &ebpf.MapSpec{Name: "ring", Type: ebpf.RingBuf, MaxEntries: 4096}},
		"lost":   {Name: "lost", Type: ebpf.PerCPUArray, KeySize: 4, ValueSize: 8, MaxEntries: MaxKinds},
		"starts": {Name: "starts", Type: ebpf.Hash, KeySize: 16, ValueSize: 16, MaxEntries: 65536},
		"waits":  {Name: "waits", Type: ebpf.Hash, KeySize: 16, ValueSize: 8, MaxEntries: 100},
	}}, nil
}

// Every map of calls in flight of a family (StartMap and InFlightMaps) is
// bounded by Options.MaxInFlight (the maps declared smaller keep their own
// size unless the option is smaller still), and all of them are emptied of
// a process's calls and swept of stale ones.
func TestInFlightMaps(t *testing.T) {
	requireBPF(t)
	agg := aggregator.New([]*aggregator.Metric{fakeDuration}, aggregator.Options{Shards: 1})
	for _, c := range []struct {
		max                   int
		wantStarts, wantWaits uint32
	}{{64, 64, 64}, {500, 500, 100}} {
		f := fakeFamily("fake", kindServer)
		f.Spec, f.StartMap, f.InFlightMaps = inflightSpec, "starts", []string{"waits"}
		m, err := New(agg, []*Family{f}, &Options{MaxInFlight: c.max, RingBytes: 4096})
		if err != nil {
			t.Fatal(err)
		}
		lf := m.families[0]
		if len(lf.starts) != 2 {
			m.Close()
			t.Fatalf("%d maps of calls in flight, want 2", len(lf.starts))
		}
		starts, waits := lf.starts[0], lf.starts[1]
		if starts.MaxEntries() != c.wantStarts || waits.MaxEntries() != c.wantWaits {
			t.Errorf("MaxInFlight %d: maps of %d and %d entries, want %d and %d", c.max, starts.MaxEntries(), waits.MaxEntries(), c.wantStarts, c.wantWaits)
		}
		// Calls of pids 1 and 2, started at 100 and 200.
		for _, sm := range lf.starts {
			for pid := uint32(1); pid <= 2; pid++ {
				for i, start := range []uint64{100, 200} {
					k := GoroutineKey{Tgid: pid, G: uint64(i + 1)}
					v := make([]byte, sm.ValueSize())
					binary.LittleEndian.PutUint64(v, start)
					if err := sm.Put(k, v); err != nil {
						t.Fatal(err)
					}
				}
			}
		}
		lf.forget(1)                                                            // pid 1 detached
		lf.dropStarts(func(_ uint32, start uint64) bool { return start < 150 }) // the sweep
		for _, sm := range lf.starts {
			var k GoroutineKey
			v := make([]byte, sm.ValueSize())
			var left []GoroutineKey
			for it := sm.Iterate(); it.Next(&k, &v); {
				left = append(left, k)
			}
			if len(left) != 1 || left[0].Tgid != 2 || binary.LittleEndian.Uint64(v) != 200 {
				t.Errorf("%v after detaching pid 1 and sweeping starts before 150: %+v left, want pid 2's call started at 200", sm, left)
			}
		}
		m.Close()
	}
}
