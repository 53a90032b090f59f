package userfunc

import (
	"testing"
	"unsafe"

	"github.com/cilium/ebpf"

	"github.com/blindspot-dev/blindspot/probes"
	"github.com/blindspot-dev/blindspot/probes/internal/bpfcheck"
	"github.com/blindspot-dev/blindspot/probes/internal/testserver"
)

// contract is the family's collection, as Family loads it and Probes
// attaches it.
func contract() bpfcheck.Family {
	f := New().Family()
	return bpfcheck.Family{
		Name: f.Name, Source: "userfunc.c", Stem: "bpf", Load: f.Spec,
		Event: "uf_event", GoEvent: bpfUfEvent{},
		ConfigMap: f.ConfigMap, Config: bpfUfSpec{},
		StartMap: f.StartMap, Programs: []string{"uprobe_uf_enter", "uprobe_uf_exit", "uprobe_uf_count"},
		Types: map[string]any{
			"event_header": probes.EventHeader{}, "goroutine_key": probes.GoroutineKey{},
			"uf_label": bpfUfLabel{}, "uf_loc": bpfUfLoc{},
		},
		LostEntries: probes.MaxKinds,
		Constants: []bpfcheck.Constant{
			// The event kind: the first field of every event, and the
			// index of the lost counters (of which there are FAMILY_MAX).
			{Name: "FAMILY_USER_FUNC", Value: kindUserFunc},
			{Name: "FAMILY_MAX", Value: probes.MaxKinds},
			// uf_label.type, uf_spec.outcome, uf_event.outcome and the limits.
			{Name: "UF_STRING", Value: int64(LabelString)},
			{Name: "UF_INT", Value: int64(LabelInt)},
			{Name: "UF_UINT", Value: int64(LabelUint)},
			{Name: "UF_BOOL", Value: int64(LabelBool)},
			{Name: "UF_OUTCOME_ERROR", Value: int64(OutcomeError)},
			{Name: "UF_OUTCOME_BOOL", Value: int64(OutcomeBool)},
			{Name: "UF_SUCCESS", Value: ufSuccess},
			{Name: "UF_FAILURE", Value: ufFailure},
			{Name: "UF_MAX_LABELS", Value: MaxLabels},
			{Name: "UF_MAX_HOPS", Value: MaxHops},
			{Name: "UF_STR_MAX", Value: MaxString},
		},
	}
}

// The family's Go types, programs, maps and constants match its objects
// and its C source (see probes/contract_test.go for what is checked where);
// the userfunc limits, #defines, are also array lengths in the objects' BTF.
func TestContract(t *testing.T) {
	f := contract()
	bpfcheck.Check(t, f)
	bpfcheck.CheckInFlightHashes(t, f)
	if fam := New().Family(); fam.Kind != kindUserFunc || fam.Entries == nil {
		t.Errorf("Family() = kind %d, entries %v; want kind %d with entries", fam.Kind, fam.Entries, kindUserFunc)
	}
	for arch, spec := range f.Specs(t) {
		for _, l := range []struct {
			path string
			want int
		}{
			{"uf_spec.labels", MaxLabels},
			{"uf_label.off", MaxHops},
			{"uf_values.num", MaxLabels},
			{"uf_values.str", MaxLabels},
			{"uf_values.str[]", MaxString},
		} {
			if n, err := bpfcheck.ArrayLen(spec, l.path); err != nil {
				t.Errorf("%s: %v", arch, err)
			} else if n != l.want {
				t.Errorf("%s: %s has %d elements, the Go side's limit is %d", arch, l.path, n, l.want)
			}
		}
	}
}

// The hand-written Go types the manager reads in place of the types
// bpf2go generated for this family are the same, field by field: Go
// converts no struct with a blank field between packages.
func TestSharedTypesAreTheGeneratedOnes(t *testing.T) {
	for _, pair := range [][2]any{
		{probes.EventHeader{}, bpfUfEvent{}.Hdr},
		{probes.GoroutineKey{}, bpfGoroutineKey{}},
	} {
		for _, e := range bpfcheck.SameLayout(pair[0], pair[1]) {
			t.Error(e)
		}
	}
}

// TestDropStartsReadsKeyAndStart runs probes.DropStarts on a real map of
// calls in flight, written with the generated key and value types (every
// start map's value begins with start_ns): it must see each entry's key
// (the PID, and the spec id in its pad, as dropStarts matches it) and
// start time.
func TestDropStartsReadsKeyAndStart(t *testing.T) {
	testserver.RequireBPF(t)
	m, err := ebpf.NewMap(&ebpf.MapSpec{
		Type:       ebpf.Hash,
		KeySize:    uint32(unsafe.Sizeof(bpfGoroutineKey{})),
		ValueSize:  uint32(unsafe.Sizeof(bpfUfStart{})),
		MaxEntries: 16,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	put := func(tgid, pad uint32, g, start uint64) {
		k := bpfGoroutineKey{Tgid: tgid, Pad: pad, G: g}
		if err := m.Put(k, bpfUfStart{StartNs: start, Depth: ^uint64(0)}); err != nil {
			t.Fatal(err)
		}
	}
	put(7, 0, 0x1000, 100)
	put(7, 3, 0x2000, 900)
	put(8, 0, 0x1000, 200)
	put(9, 1, 0x3000, 5000)
	put(9, 2, 0x4000, 6000)
	type seen struct {
		tgid, pad uint32
		g, start  uint64
	}
	var got []seen
	probes.DropStarts(m, func(k probes.GoroutineKey, start uint64) bool {
		got = append(got, seen{k.Tgid, k.Pad, k.G, start})
		return k.Tgid == 7 || start < 300 || (k.Tgid == 9 && k.Pad == 2)
	})
	want := map[seen]bool{{7, 0, 0x1000, 100}: true, {7, 3, 0x2000, 900}: true, {8, 0, 0x1000, 200}: true,
		{9, 1, 0x3000, 5000}: true, {9, 2, 0x4000, 6000}: true}
	if len(got) != len(want) {
		t.Fatalf("DropStarts saw %v, want %v", got, want)
	}
	for _, s := range got {
		if !want[s] {
			t.Errorf("DropStarts saw %+v, want one of %v", s, want)
		}
	}
	var k bpfGoroutineKey
	var v bpfUfStart
	var left []bpfGoroutineKey
	for it := m.Iterate(); it.Next(&k, &v); {
		left = append(left, k)
	}
	if len(left) != 1 || left[0] != (bpfGoroutineKey{Tgid: 9, Pad: 1, G: 0x3000}) {
		t.Errorf("left %+v, want only {9 1 0x3000}", left)
	}
}
